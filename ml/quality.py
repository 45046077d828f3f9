"""Signal-quality verdicts and heart-rate estimates for decoded recordings.

Pure functions on numpy arrays. The verdict is ``good``, ``poor`` or
``unusable``, always with the reasons that led to it, so a screening result can
show "abnormal, poor quality: 31% silence" rather than a bare label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.audio import Audio

GOOD = "good"
POOR = "poor"
UNUSABLE = "unusable"

SILENCE_FRAME_S = 0.1
SILENCE_SPAN_S = 1.5  # longer than the slowest beat (40 bpm)
SILENCE_LEVEL = 0.01  # frame RMS below this share of the loud (95th pct) frames is silent
ENVELOPE_RATE_HZ = 50
ENVELOPE_SMOOTH_TAPS = 5  # envelope samples in the smoothing window (100 ms)
MIN_BPM = 35.0
MAX_BPM = 180.0
HALF_LAG_RATIO = 0.9

MIN_GOOD_DURATION_S = 5.0
MIN_USABLE_DURATION_S = 1.0
POOR_CLIPPING = 0.01
UNUSABLE_CLIPPING = 0.10
POOR_SILENCE = 0.20
UNUSABLE_SILENCE = 0.60
POOR_PERIODICITY = 0.25  # envelope autocorrelation peak; noise scores near 0


@dataclass(frozen=True)
class QualityReport:
    """Quality verdict with its reasons and the measures behind it.

    Fractions are in [0, 1]; ``periodicity`` is the height of the envelope's
    autocorrelation peak in the heart-rate range (1 = perfectly periodic).
    """

    verdict: str
    reasons: list[str]
    duration_s: float
    clipping_fraction: float
    silence_fraction: float
    periodicity: float
    heart_rate_bpm: float | None


def silence_fraction(samples: np.ndarray, *, sample_rate: int) -> float:
    """Share of the recording in silent stretches, in [0, 1].

    A 100-ms frame is silent when no frame within ``SILENCE_SPAN_S`` seconds
    around it reaches 1% of the loud (95th percentile) frames' RMS, so the quiet
    diastole between two beats does not count as silence, but a dropout does.
    """
    frame = max(1, int(SILENCE_FRAME_S * sample_rate))
    count = len(samples) // frame
    if count == 0:
        return 1.0
    rms = np.sqrt(np.mean(np.square(samples[: count * frame].reshape(count, frame)), axis=1))
    loud = float(np.percentile(rms, 95))
    if loud <= 0.0:
        return 1.0
    span = max(1, round(SILENCE_SPAN_S / SILENCE_FRAME_S))
    neighbourhood = running_max(rms, span)
    return float(np.mean(neighbourhood < SILENCE_LEVEL * loud))


def running_max(values: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.maximum_filter1d(values, size, mode="nearest")``: the largest value in
    each centred window of ``size``, edges repeated (without scipy.ndimage's import time)."""
    left = size // 2
    count = len(values)
    if count == 0:
        return np.asarray(values).copy()
    padded = np.concatenate((np.full(left, values[0]), values, np.full(size - 1 - left, values[-1])))
    # One maximum per offset over the whole array: a window view's reduction over
    # rows of a dozen values costs three times as much on a recording's hundred frames.
    out = padded[:count].copy()
    for offset in range(1, size):
        np.maximum(out, padded[offset : offset + count], out=out)
    return out


def clipping_fraction(samples: np.ndarray, *, level: float = 0.999) -> float:
    """Share of samples at or beyond ``level`` of full scale (full scale = 1)."""
    if len(samples) == 0:
        return 0.0
    return float(np.mean(np.abs(samples) >= level))


_SMOOTHING = np.hanning(ENVELOPE_SMOOTH_TAPS + 2)[1:-1]
_SMOOTHING.setflags(write=False)


def envelope(samples: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Smoothed amplitude envelope sampled at ``ENVELOPE_RATE_HZ`` Hz, zero mean, unit peak."""
    step = max(1, sample_rate // ENVELOPE_RATE_HZ)
    count = len(samples) // step
    blocks = np.abs(samples[: count * step]).reshape(count, step).mean(axis=1)
    if count > ENVELOPE_SMOOTH_TAPS:
        blocks = np.convolve(blocks, _SMOOTHING, mode="same")
    decimated: np.ndarray = blocks - blocks.mean()
    peak = float(np.max(np.abs(decimated))) if len(decimated) else 0.0
    return decimated / peak if peak > 0 else decimated


def autocorrelation(values: np.ndarray) -> np.ndarray:
    """Autocorrelation of a zero-mean sequence, normalised to 1 at lag 0 (lags in samples)."""
    spectrum = np.fft.rfft(values, n=2 * len(values))
    correlation = np.fft.irfft(np.abs(spectrum) ** 2)[: len(values)]
    return correlation / correlation[0] if correlation[0] > 0 else correlation


def _rate_peak(samples: np.ndarray, *, sample_rate: int) -> tuple[float | None, float]:
    """(beat period in s or None, autocorrelation height at that lag)."""
    env = envelope(samples, sample_rate=sample_rate)
    lo = int(ENVELOPE_RATE_HZ * 60.0 / MAX_BPM)
    hi = int(ENVELOPE_RATE_HZ * 60.0 / MIN_BPM)
    if len(env) <= hi + 1:
        return None, 0.0
    correlation = autocorrelation(env)
    lag = lo + int(np.argmax(correlation[lo : hi + 1]))
    height = float(correlation[lag])
    if height <= 0.0:
        return None, 0.0
    # Two beats align as well as one: prefer the half lag when it is nearly as strong.
    half = lag // 2
    if half >= lo and correlation[half] > HALF_LAG_RATIO * height:
        lag = half
    return lag / ENVELOPE_RATE_HZ, height


def heart_rate_bpm(samples: np.ndarray, *, sample_rate: int) -> float | None:
    """Heart rate in beats per minute from the envelope autocorrelation, or None."""
    period_s, _ = _rate_peak(samples, sample_rate=sample_rate)
    return None if period_s is None else 60.0 / period_s


def periodicity(samples: np.ndarray, *, sample_rate: int) -> float:
    """Envelope autocorrelation peak in the heart-rate range, in [0, 1]."""
    _, height = _rate_peak(samples, sample_rate=sample_rate)
    return max(0.0, min(1.0, height))


def verdict(*, duration_s: float, clipping: float, silence: float, periodic: float) -> tuple[str, list[str]]:
    """Turn measures into a verdict and its reasons (empty reasons when good)."""
    unusable, poor = [], []
    if duration_s < MIN_USABLE_DURATION_S:
        unusable.append(f"duration {duration_s:.1f} s is under {MIN_USABLE_DURATION_S:.0f} s")
    elif duration_s < MIN_GOOD_DURATION_S:
        poor.append(
            f"duration {duration_s:.1f} s is under {MIN_GOOD_DURATION_S:.0f} s: "
            "too few beats for a reliable verdict"
        )
    if clipping >= UNUSABLE_CLIPPING:
        unusable.append(f"clipping on {clipping:.1%} of samples")
    elif clipping >= POOR_CLIPPING:
        poor.append(f"clipping on {clipping:.1%} of samples")
    if silence >= UNUSABLE_SILENCE:
        unusable.append(f"silence in {silence:.0%} of the recording")
    elif silence >= POOR_SILENCE:
        poor.append(f"silence in {silence:.0%} of the recording")
    if periodic < POOR_PERIODICITY:
        poor.append(f"noisy: no clear heartbeat rhythm (periodicity {periodic:.2f})")
    if unusable:
        return UNUSABLE, unusable + poor
    return (POOR, poor) if poor else (GOOD, [])


def assess(audio: Audio) -> QualityReport:
    """Quality report of a decoded recording."""
    silence = silence_fraction(audio.samples, sample_rate=audio.sample_rate)
    period_s, height = _rate_peak(audio.samples, sample_rate=audio.sample_rate)
    periodic = max(0.0, min(1.0, height))
    label, reasons = verdict(
        duration_s=audio.duration_s,
        clipping=audio.clipping_fraction,
        silence=silence,
        periodic=periodic,
    )
    return QualityReport(
        verdict=label,
        reasons=reasons,
        duration_s=audio.duration_s,
        clipping_fraction=audio.clipping_fraction,
        silence_fraction=silence,
        periodicity=periodic,
        heart_rate_bpm=None if period_s is None else 60.0 / period_s,
    )
