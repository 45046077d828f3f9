"""Waveform augmentation for training: gain, noise, filtering, speed and time shift.

Each transform imitates a difference between sites and devices (stethoscope
response, background noise, heart rate, where the recording starts). Inputs and
outputs are 1-D float signals at ``sample_rate`` Hz.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ml.audio import normalise

SPEED_DENOMINATOR = 20  # speed factors are k/20, i.e. 0.9 .. 1.1 in steps of 5%
SPEED_RANGE = (18, 22)
NOISE_SNR_DB = (5.0, 30.0)
LOWPASS_HZ = (150.0, 450.0)
HIGHPASS_HZ = (20.0, 90.0)
GAIN_DB = (-12.0, 12.0)
MAX_SHIFT_S = 2.0
APPLY_PROBABILITY = 0.5
EQ_POINTS_HZ = (20.0, 40.0, 80.0, 160.0, 320.0, 640.0)  # control points of a random device response
EQ_GAIN_DB = 9.0
EQ_TILT_DB_PER_OCTAVE = 3.0


def augment(
    samples: np.ndarray,
    *,
    sample_rate: int,
    rng: np.random.Generator,
    noise_probability: float = APPLY_PROBABILITY,
    snr_db: tuple[float, float] = NOISE_SNR_DB,
    eq_probability: float = 0.0,
    speed_range: tuple[int, int] = SPEED_RANGE,
) -> np.ndarray:
    """A randomly altered copy of ``samples`` (renormalised to unit RMS).

    ``noise_probability`` is the chance of adding noise at an SNR drawn from
    ``snr_db`` (decibels); ``eq_probability`` the chance of a random device
    response (``random_eq``); ``speed_range`` bounds the speed factor in
    twentieths. The other transforms apply with probability 0.5.
    """
    out = random_shift(samples, sample_rate=sample_rate, rng=rng)
    if rng.random() < APPLY_PROBABILITY:
        out = change_speed(out, factor_twentieths=int(rng.integers(*speed_range, endpoint=True)))
    if rng.random() < APPLY_PROBABILITY:
        out = random_filter(out, sample_rate=sample_rate, rng=rng)
    if eq_probability > 0 and rng.random() < eq_probability:
        out = random_eq(out, sample_rate=sample_rate, rng=rng)
    if rng.random() < noise_probability:
        out = add_noise(out, snr_db=float(rng.uniform(*snr_db)), rng=rng)
    gain = 10 ** (rng.uniform(*GAIN_DB) / 20)
    return normalise(out * gain)


def random_shift(samples: np.ndarray, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Drop a random lead of up to ``MAX_SHIFT_S`` seconds (keeping at least half)."""
    limit = min(int(MAX_SHIFT_S * sample_rate), len(samples) // 2)
    return samples[int(rng.integers(0, limit + 1)) :] if limit > 0 else samples


def change_speed(samples: np.ndarray, *, factor_twentieths: int) -> np.ndarray:
    """Play ``factor_twentieths / 20`` times faster (pitch and heart rate both change)."""
    if factor_twentieths == SPEED_DENOMINATOR:
        return samples
    return np.asarray(signal.resample_poly(samples, SPEED_DENOMINATOR, factor_twentieths))


def random_filter(samples: np.ndarray, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A gentle random low-pass or high-pass, like a different stethoscope head."""
    if rng.random() < APPLY_PROBABILITY:
        sos = signal.butter(2, rng.uniform(*LOWPASS_HZ), btype="lowpass", fs=sample_rate, output="sos")
    else:
        sos = signal.butter(2, rng.uniform(*HIGHPASS_HZ), btype="highpass", fs=sample_rate, output="sos")
    return np.asarray(signal.sosfilt(sos, samples))


def random_eq(samples: np.ndarray, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Apply a smooth random frequency response: a tilt plus independent bumps.

    The gain in dB is a random slope of up to ``EQ_TILT_DB_PER_OCTAVE`` plus
    values of up to ``EQ_GAIN_DB`` at ``EQ_POINTS_HZ``, interpolated over
    log-frequency, as stethoscope heads, diaphragms and microphones differ.
    """
    points = np.log2(np.asarray(EQ_POINTS_HZ))
    gains_db = rng.uniform(-EQ_GAIN_DB, EQ_GAIN_DB, len(points))
    gains_db += rng.uniform(-EQ_TILT_DB_PER_OCTAVE, EQ_TILT_DB_PER_OCTAVE) * (points - points.mean())
    spectrum = np.fft.rfft(samples)
    frequencies = np.fft.rfftfreq(len(samples), d=1.0 / sample_rate)
    curve_db = np.interp(np.log2(np.maximum(frequencies, EQ_POINTS_HZ[0])), points, gains_db)
    return np.fft.irfft(spectrum * 10 ** (curve_db / 20), n=len(samples))


def add_noise(samples: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white or low-frequency-heavy (brown) noise ``snr_db`` decibels below the signal."""
    noise = rng.standard_normal(len(samples))
    if rng.random() < APPLY_PROBABILITY:
        noise = np.cumsum(noise)  # brown noise: body movement and rubbing are mostly low-pitched
        noise -= np.linspace(noise[0], noise[-1], len(noise))
    signal_power = float(np.mean(np.square(samples))) or 1.0
    noise_power = float(np.mean(np.square(noise))) or 1.0
    noisy: np.ndarray = samples + noise * np.sqrt(signal_power / noise_power / 10 ** (snr_db / 10))
    return noisy
