"""Recording plots: drawn once by a worker, cached in storage, served by the pages.

The overview (waveform with the S1/S2 heart sounds the segmentation found, and
the model's per-window probabilities under it) depends on the audio and the
model version; the spectrogram on the audio only.
Both are keyed by the audio's checksum, so a recording uploaded twice is drawn
once. Drawing needs the decoded audio, so it happens in a worker; the web
process only checks whether the images exist, asks for them, and reads them.
"""

import io
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from jobs import storage
from jobs.models import ModelVersion, Prediction, Recording
from jobs.services import packs, verdicts

logger = logging.getLogger(__name__)

TASK_NAME = "lubdub.render_plots"
TASK_QUEUE = "reports"
# A render request is sent at most once per this window per image set, however
# often the page polls; the task itself is safe to run twice.
REQUEST_DEDUP_SECONDS = 120
WIDTH_IN = 11.0
DPI = 100
WAVEFORM_COLUMNS = 2200  # min/max pairs drawn: about two per pixel
SPECTROGRAM_WINDOW_S = 0.064
SPECTROGRAM_MAX_HZ = 800
LISTEN_MIN_RATE_HZ = 8000
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 0.85, 0.75, 0.35, 0.5
# Part of the overview's key: bumped when the drawing changes, so images cached
# before (without the S1/S2 markers; 2: a waveform cut short of the recording's
# end) are drawn again instead of served.
OVERVIEW_DRAWING = 3
S1_COLOUR, S2_COLOUR = "#1f55a8", "#1c6b3a"


@dataclass(frozen=True)
class PlotSet:
    """Where one recording's images live and whether they are there yet."""

    overview_key: str | None
    spectrogram_key: str
    listen_key: str
    failure_key: str

    @property
    def keys(self) -> dict[str, str]:
        keys = {"spectrogram": self.spectrogram_key, "listen": self.listen_key}
        if self.overview_key:
            keys["overview"] = self.overview_key
        return keys


def plot_set(recording: Recording, model_version: ModelVersion | None) -> PlotSet:
    slug = model_version.slug if model_version else None
    return PlotSet(
        overview_key=(
            storage.plot_key(recording.sha256, f"overview-{slug}-v{OVERVIEW_DRAWING}.png") if slug else None
        ),
        spectrogram_key=storage.plot_key(recording.sha256, "spectrogram.png"),
        listen_key=storage.plot_key(recording.sha256, "listen.wav"),
        failure_key=storage.plot_key(recording.sha256, "failed.txt"),
    )


@dataclass(frozen=True)
class PlotState:
    ready: bool
    failed: bool
    available: list[str]


def plot_state(recording: Recording, model_version: ModelVersion | None) -> PlotState:
    """Which images exist; asks a worker to draw the missing ones."""
    if not recording.storage_key:
        return PlotState(ready=False, failed=True, available=[])
    plots = plot_set(recording, model_version)
    available = [name for name, key in plots.keys.items() if storage.exists(key)]
    if len(available) == len(plots.keys):
        return PlotState(ready=True, failed=False, available=available)
    if storage.exists(plots.failure_key):
        return PlotState(ready=False, failed=True, available=available)
    request_plots(recording, model_version)
    return PlotState(ready=False, failed=False, available=available)


def request_plots(recording: Recording, model_version: ModelVersion | None) -> bool:
    """Send the render task unless one was sent for the same images very recently."""
    version_id = model_version.pk if model_version else None
    if not cache.add(f"plots:{recording.sha256}:{version_id}", 1, REQUEST_DEDUP_SECONDS):
        return False
    from config.celery_app import app

    app.send_task(TASK_NAME, args=[recording.pk, version_id], queue=TASK_QUEUE)
    return True


def listening_key(recording: Recording) -> str | None:
    """Storage key of the browser-playable copy, once a worker has made it."""
    if not recording.storage_key:
        return None
    key = plot_set(recording, None).listen_key
    return key if storage.exists(key) else None


def read_plot(recording: Recording, model_version: ModelVersion | None, name: str) -> bytes:
    key = plot_set(recording, model_version).keys.get(name)
    if key is None:
        raise FileNotFoundError(name)
    return storage.read_bytes(key)


# --- drawing (worker only) ----------------------------------------------------


def render_recording_plots(recording_id: int, model_version_id: int | None) -> list[str]:
    """Draw and store the images of one recording; returns the keys written.

    Audio that cannot be decoded is a permanent failure, recorded in storage so
    the page stops waiting; storage errors propagate for the task to retry.
    """
    from ml.errors import AudioError

    recording = Recording.objects.get(pk=recording_id)
    model_version = ModelVersion.objects.filter(pk=model_version_id).first() if model_version_id else None
    plots = plot_set(recording, model_version)
    payload = packs.read_one(
        packs.span_of(recording.storage_key, recording.storage_offset, recording.size_bytes)
    )
    try:
        audio = _decode(payload, model_version)
        listening = listening_copy(payload)
    except AudioError as exc:
        storage.put_bytes(plots.failure_key, f"{exc.code}: {exc}".encode())
        logger.info("no plots for recording %s: %s", recording_id, exc)
        return [plots.failure_key]
    prediction = (
        Prediction.objects.filter(recording=recording, model_version=model_version).first()
        if model_version
        else None
    )
    written = []
    if plots.overview_key:
        storage.put_bytes(plots.overview_key, draw_overview(audio, prediction, model_version))
        written.append(plots.overview_key)
    storage.put_bytes(plots.spectrogram_key, draw_spectrogram(audio))
    storage.put_bytes(plots.listen_key, listening)
    written += [plots.spectrogram_key, plots.listen_key]
    return written


def _features(model_version: ModelVersion | None) -> tuple[int, tuple[float, float]]:
    """Sample rate and band the model's features use (the ml defaults otherwise)."""
    from ml.audio import DEFAULT_BAND_HZ, DEFAULT_RATE_HZ

    features = dict((model_version.manifest or {}).get("feature_config") or {}) if model_version else {}
    band = (
        float(features.get("band_low_hz", DEFAULT_BAND_HZ[0])),
        float(features.get("band_high_hz", DEFAULT_BAND_HZ[1])),
    )
    return int(features.get("sample_rate", DEFAULT_RATE_HZ)), band


def _decode(payload: bytes, model_version: ModelVersion | None) -> Any:
    from ml.audio import decode_audio

    # Plots show what the model hears, so decode with its rate and band, but
    # draw even recordings too short to classify.
    rate, band = _features(model_version)
    return decode_audio(payload, target_rate=rate, band_hz=band, min_duration_s=0.05)


def listening_copy(payload: bytes) -> bytes:
    """The recording as 16-bit mono WAV at a rate every browser plays.

    Browsers refuse audio below 3 kHz (PhysioNet recordings are 2 kHz) and
    many formats besides WAV, so the player gets this copy, not the upload.
    """
    import numpy as np
    import soundfile

    from ml import errors
    from ml.audio import resample

    try:
        frames, rate = soundfile.read(io.BytesIO(payload), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise errors.AudioError(errors.UNDECODABLE, "the recording cannot be decoded") from exc
    mono = frames.mean(axis=1)
    if rate < LISTEN_MIN_RATE_HZ:
        mono = resample(mono, source_rate=rate, target_rate=LISTEN_MIN_RATE_HZ)
        rate = LISTEN_MIN_RATE_HZ
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak > 1.0:
        mono = mono / peak
    buffer = io.BytesIO()
    soundfile.write(buffer, mono, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _figure(height_in: float, rows: int, ratios: list[float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(
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


def _png(figure: Any) -> bytes:
    from matplotlib import pyplot

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    pyplot.close(figure)
    return buffer.getvalue()


def waveform_envelope(samples: Any, *, columns: int) -> tuple[Any, Any, Any]:
    """Per-column minimum and maximum of the signal, with each column's first sample.

    Columns split every sample between them (some are one sample longer), so the
    drawing spans the whole recording and lines up with times such as heart-sound
    onsets.
    """
    import numpy as np

    values = np.asarray(samples)
    columns = max(1, min(columns, len(values)))
    starts = np.linspace(0, len(values), columns + 1).astype(np.int64)[:-1]
    return starts, np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)


def draw_overview(audio: Any, prediction: Prediction | None, model_version: ModelVersion | None) -> bytes:
    return _png(overview_figure(audio, prediction, model_version))


def overview_figure(audio: Any, prediction: Prediction | None, model_version: ModelVersion | None) -> Any:
    """The overview as a matplotlib figure: waveform (with heart sounds) over the window probabilities."""
    import numpy as np

    low_hz, high_hz = _features(model_version)[1]
    band = f"{low_hz:g}–{high_hz:g} Hz"
    figure, (wave_axis, prob_axis) = _figure(4.4, 2, [1.4, 1.0])
    starts, low, high = waveform_envelope(audio.samples, columns=WAVEFORM_COLUMNS)
    times = starts / audio.sample_rate
    wave_axis.fill_between(times, low, high, color="#8a1c2b", linewidth=0.4)
    wave_axis.set_ylabel("amplitude\n(normalised)")
    peak = float(np.max(np.abs(audio.samples))) or 1.0
    wave_axis.set_ylim(-peak * 1.05, peak * 1.05)
    _draw_heart_sounds(wave_axis, heart_sounds(prediction), height=peak * 1.05)
    wave_axis.set_title(
        f"Waveform ({band} band) and the model's probability per window", fontsize=11, loc="left"
    )
    windows = timeline_windows(prediction)
    _draw_timeline(prob_axis, windows, model_version=model_version)
    prob_axis.set_xlim(0, audio.duration_s)
    prob_axis.set_xlabel("time (s)")
    for axis in (wave_axis, prob_axis):
        axis.grid(True, color="#e3e6ea", linewidth=0.6)
        axis.spines[["top", "right"]].set_visible(False)
    return figure


@dataclass(frozen=True)
class HeartSounds:
    """Onsets in seconds of the first (S1) and second (S2) heart sounds."""

    s1_s: list[float]
    s2_s: list[float]


def heart_sounds(prediction: Prediction | None) -> HeartSounds | None:
    """The prediction's segmented heart sounds; None for predictions made before segmentation."""
    segments = prediction.segments if prediction else None
    if not segments:
        return None
    return HeartSounds(
        s1_s=[float(onset) for onset in segments.get("s1_s") or []],
        s2_s=[float(onset) for onset in segments.get("s2_s") or []],
    )


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


def _classes(model_version: ModelVersion | None) -> list[str]:
    return list(model_version.classes) if model_version else []


COLOURS = ["#b42318", "#1f55a8", "#1c6b3a", "#7a4a00", "#6b3fa0"]


def screened_classes(model_version: ModelVersion | None) -> tuple[list[str], float | None]:
    """Classes to draw and the decision threshold: a screening model's positive
    class alone against its threshold, otherwise every class."""
    if model_version is None:
        return [], None
    positive = verdicts.positive_class(model_version)
    if positive is None:
        return list(model_version.classes), None
    return [positive], float((model_version.manifest or {}).get("decision_threshold", 0.5))


def _draw_timeline(axis: Any, windows: list["Window"], *, model_version: ModelVersion | None) -> None:
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
    shown, threshold = screened_classes(model_version)
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


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    probabilities: dict[str, float]


def timeline_windows(prediction: Prediction | None) -> list[Window]:
    """The prediction's per-window probabilities (``start_s``, ``end_s`` in seconds
    and ``probabilities`` by class name, as the inference engine writes them)."""
    if prediction is None:
        return []
    return [
        Window(
            start_s=float(entry["start_s"]),
            end_s=float(entry["end_s"]),
            probabilities={str(name): float(value) for name, value in entry["probabilities"].items()},
        )
        for entry in prediction.timeline or []
    ]


def draw_spectrogram(audio: Any) -> bytes:
    import numpy as np
    from scipy import signal

    per_segment = int(SPECTROGRAM_WINDOW_S * audio.sample_rate)
    frequencies, times, power = signal.spectrogram(
        audio.samples, fs=audio.sample_rate, nperseg=per_segment, noverlap=per_segment * 3 // 4
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
    axis.set_xlim(0, audio.duration_s)
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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(4.8, 4.4), dpi=DPI)
    axis.plot([0, 1], [0, 1], color="#b8c1ca", linestyle="--", linewidth=1, label="chance")
    rates = [(float(point[0] or 0.0), float(point[1] or 0.0)) for point in points]
    axis.plot([x for x, _ in rates], [y for _, y in rates], color="#2f6f9f", linewidth=2, label="ROC")
    axis.plot(*chosen, "o", color="#a1260d", markersize=8, label="chosen threshold")
    axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 − specificity", ylabel="sensitivity", title=title)
    axis.legend(loc="lower right", fontsize=9, frameon=False)
    figure.tight_layout()
    return _png(figure)
