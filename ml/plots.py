"""Recording, calibration and training figures: arrays in, PNG bytes out.

The overview is the waveform (with the S1/S2 heart sounds segmentation found)
over the model's per-window probabilities; the spectrogram is the audio alone;
the ROC curve is a site calibration's; the learning curves are a training run's
history. Nothing here knows the platform's rows:
jobs.services.plots turns a recording and its prediction into these arguments
and stores the images. matplotlib and scipy load on first drawing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WIDTH_IN = 11.0
DPI = 100
CURVES_DPI = 80  # the learning curves, a small figure in a model's bundle
WAVEFORM_COLUMNS = 2200  # min/max pairs drawn: about two per pixel
SPECTROGRAM_WINDOW_S = 0.064
SPECTROGRAM_MAX_HZ = 800
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 0.85, 0.75, 0.35, 0.5
S1_COLOUR, S2_COLOUR = "#1f55a8", "#1c6b3a"
COLOURS = ["#b42318", "#1f55a8", "#1c6b3a", "#7a4a00", "#6b3fa0"]


@dataclass(frozen=True)
class HeartSounds:
    """Onsets in seconds of the first (S1) and second (S2) heart sounds."""

    s1_s: list[float]
    s2_s: list[float]


@dataclass(frozen=True)
class Window:
    """One analysis window: its span in seconds and the probability of each class."""

    start_s: float
    end_s: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Overview:
    """What an overview shows besides the samples: their rate (Hz), length (s) and band (Hz),
    the heart sounds, the windows with the classes to draw and the decision threshold."""

    sample_rate: int
    duration_s: float
    band_hz: tuple[float, float]
    heart_sounds: HeartSounds | None
    windows: Sequence[Window]
    shown: Sequence[str]
    threshold: float | None


def draw_overview(samples: np.ndarray, overview: Overview) -> bytes:
    """The overview as PNG bytes (see overview_figure)."""
    return _png(overview_figure(samples, overview))


def overview_figure(samples: np.ndarray, overview: Overview) -> Any:
    """The waveform of ``samples`` with its heart sounds, over the probability of each
    shown class per window and the threshold."""
    low_hz, high_hz = overview.band_hz
    band = f"{low_hz:g}–{high_hz:g} Hz"
    figure, (wave_axis, prob_axis) = _figure(4.4, 2, [1.4, 1.0])
    starts, low, high = waveform_envelope(samples, columns=WAVEFORM_COLUMNS)
    times = starts / overview.sample_rate
    wave_axis.fill_between(times, low, high, color="#8a1c2b", linewidth=0.4)
    wave_axis.set_ylabel("amplitude\n(normalised)")
    peak = float(np.max(np.abs(samples))) or 1.0
    wave_axis.set_ylim(-peak * 1.05, peak * 1.05)
    _draw_heart_sounds(wave_axis, overview.heart_sounds, height=peak * 1.05)
    wave_axis.set_title(
        f"Waveform ({band} band) and the model's probability per window", fontsize=11, loc="left"
    )
    _draw_timeline(prob_axis, overview.windows, shown=overview.shown, threshold=overview.threshold)
    prob_axis.set_xlim(0, overview.duration_s)
    prob_axis.set_xlabel("time (s)")
    for axis in (wave_axis, prob_axis):
        axis.grid(True, color="#e3e6ea", linewidth=0.6)
        axis.spines[["top", "right"]].set_visible(False)
    return figure


def waveform_envelope(samples: Any, *, columns: int) -> tuple[Any, Any, Any]:
    """Per-column minimum and maximum of the signal, with each column's first sample.

    Columns split every sample between them (some are one sample longer), so the
    drawing spans the whole recording and lines up with times such as heart-sound
    onsets.
    """
    values = np.asarray(samples)
    columns = max(1, min(columns, len(values)))
    starts = np.linspace(0, len(values), columns + 1).astype(np.int64)[:-1]
    return starts, np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)


def draw_spectrogram(samples: np.ndarray, *, sample_rate: int, duration_s: float) -> bytes:
    """The spectrogram of ``samples`` (at ``sample_rate`` Hz, ``duration_s`` seconds) up to
    SPECTROGRAM_MAX_HZ, in dB."""
    from scipy import signal

    per_segment = int(SPECTROGRAM_WINDOW_S * sample_rate)
    frequencies, times, power = signal.spectrogram(
        samples, fs=sample_rate, nperseg=per_segment, noverlap=per_segment * 3 // 4
    )
    keep = frequencies <= SPECTROGRAM_MAX_HZ
    decibels = 10 * np.log10(power[keep] + 1e-10)
    figure, (axis,) = _figure(3.0, 1, [1.0])
    floor = float(np.percentile(decibels, 5))
    image = axis.pcolormesh(
        times,
        frequencies[keep],
        decibels,
        shading="auto",
        cmap="magma",
        vmin=floor,
        vmax=float(decibels.max()),
        rasterized=True,
    )
    axis.set_xlim(0, duration_s)
    axis.set_ylabel("frequency (Hz)")
    axis.set_xlabel("time (s)")
    axis.set_title("Spectrogram", fontsize=11, loc="left")
    box = axis.get_position()
    colorbar_axis = figure.add_axes((box.x1 + 0.01, box.y0, 0.012, box.height))
    colorbar = figure.colorbar(image, cax=colorbar_axis)
    colorbar.ax.set_title("dB", fontsize=9)
    return _png(figure)


def draw_roc(points: list[list[float | None]], *, chosen: tuple[float, float], title: str) -> bytes:
    """A site calibration's ROC curve with its chosen operating point (false and true positive rates).

    Small enough to draw on request in the web process: a few hundred points, no audio.
    """
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(4.8, 4.4), dpi=DPI)
    axis.plot([0, 1], [0, 1], color="#b8c1ca", linestyle="--", linewidth=1, label="chance")
    rates = [(float(point[0] or 0.0), float(point[1] or 0.0)) for point in points]
    axis.plot([x for x, _ in rates], [y for _, y in rates], color="#2f6f9f", linewidth=2, label="ROC")
    axis.plot(*chosen, "o", color="#a1260d", markersize=8, label="chosen threshold")
    axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 − specificity", ylabel="sensitivity", title=title)
    axis.legend(loc="lower right", fontsize=9, frameon=False)
    figure.tight_layout()
    return _png(figure)


def draw_curves(history: dict[str, list[float]]) -> bytes:
    """Accuracy and loss per epoch (training windows vs validation recordings) as PNG bytes."""
    figure, (loss_axis, accuracy_axis) = _pyplot().subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key, axis in (("loss", loss_axis), ("accuracy", accuracy_axis)):
        axis.plot(epochs, history.get(key, []), label=f"train {key} (windows)")
        axis.plot(epochs, history.get(f"val_{key}", []), label=f"validation {key} (recordings)")
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return _png(figure, dpi=CURVES_DPI)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _figure(height_in: float, rows: int, ratios: list[float]) -> tuple[Any, Any]:
    figure, axes = _pyplot().subplots(
        rows,
        1,
        figsize=(WIDTH_IN, height_in),
        dpi=DPI,
        sharex=True,
        gridspec_kw={"height_ratios": ratios, "hspace": 0.08},
        squeeze=False,
    )
    # Margins in inches, identical in both figures, so their time axes line up
    # when the images are shown one above the other at the same width.
    figure.subplots_adjust(
        left=LEFT_IN / WIDTH_IN,
        right=1 - RIGHT_IN / WIDTH_IN,
        top=1 - TOP_IN / height_in,
        bottom=BOTTOM_IN / height_in,
    )
    return figure, [row[0] for row in axes]


def _png(figure: Any, *, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(figure)
    return buffer.getvalue()


def _draw_heart_sounds(axis: Any, sounds: HeartSounds | None, *, height: float) -> None:
    if sounds is None or not (sounds.s1_s or sounds.s2_s):
        return
    # S1 solid and S2 dashed, so they stay apart in grey print and for colour-blind readers.
    for onsets, colour, style, name in (
        (sounds.s1_s, S1_COLOUR, "solid", "S1 (first heart sound)"),
        (sounds.s2_s, S2_COLOUR, "dashed", "S2 (second heart sound)"),
    ):
        if onsets:
            axis.vlines(
                onsets, -height, height, colors=colour, linestyles=style, linewidth=0.9, alpha=0.8, label=name
            )
    axis.legend(loc="upper right", fontsize=9, frameon=True, framealpha=0.85, ncol=2)


def _draw_timeline(
    axis: Any, windows: Sequence[Window], *, shown: Sequence[str], threshold: float | None
) -> None:
    axis.set_ylim(0, 1)
    axis.set_ylabel("probability")
    if not windows:
        axis.text(
            0.5,
            0.5,
            "no window probabilities for this model",
            ha="center",
            va="center",
            transform=axis.transAxes,
            color="#55606e",
        )
        return
    # Windows overlap, so each is drawn at its centre.
    centres = [(window.start_s + window.end_s) / 2 for window in windows]
    for position, name in enumerate(shown):
        colour = COLOURS[position % len(COLOURS)]
        values = [window.probabilities.get(name, 0.0) for window in windows]
        axis.fill_between(centres, 0, values, color=colour, alpha=0.15 / len(shown))
        axis.plot(
            centres,
            values,
            color=colour,
            linewidth=1.8,
            marker="o",
            markersize=3.5,
            label=f"p({name}) per window",
        )
    if threshold is not None:
        axis.axhline(
            threshold, color="#55606e", linewidth=0.9, linestyle="--", label=f"threshold {threshold:.2f}"
        )
    axis.legend(loc="upper right", fontsize=9, frameon=False, ncol=len(shown) + 1)
