"""Synthetic heart-sound trains with known S1 and S2 onsets, for the segmenter's tests."""

from __future__ import annotations

import numpy as np

S1_S, S2_S = 0.11, 0.09  # sound durations in seconds


def _burst(
    duration_s: float, *, sample_rate: int, low_hz: float, high_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """A damped burst of band-limited noise: the rough shape of a valve closing."""
    n = int(duration_s * sample_rate)
    spectrum = np.fft.rfft(rng.standard_normal(4 * n))
    freqs = np.fft.rfftfreq(4 * n, 1 / sample_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    noise = np.fft.irfft(spectrum)[:n]
    return noise / (np.abs(noise).max() + 1e-9) * np.hanning(n)


def heart_sounds(
    *,
    bpm: float = 72.0,
    duration_s: float = 12.0,
    sample_rate: int = 2000,
    jitter: float = 0.0,
    missing: tuple[int, ...] = (),
    snr_db: float | None = None,
    murmur: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples, S1 onsets, S2 onsets) in seconds.

    ``jitter``: standard deviation of each beat's period as a share of it (an
    irregular rhythm); ``missing``: indices of beats left out (a dropped beat
    leaves a long pause); ``snr_db``: white noise at that signal-to-noise ratio;
    ``murmur``: amplitude of a noisy systolic murmur against S1.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration_s * sample_rate))
    s1, s2 = [], []
    t = 0.3
    index = 0
    while True:
        period = 60.0 / bpm * (1 + jitter * rng.standard_normal())
        systole = 0.1 * period + 0.25  # S1 onset to S2 onset shortens with the rate
        if t + period >= duration_s - 0.2:
            break
        if index not in missing:
            for onset, length, band, amplitude, found in (
                (t, S1_S, (30.0, 90.0), 1.0, s1),
                (t + systole, S2_S, (50.0, 150.0), 0.7, s2),
            ):
                start = int(onset * sample_rate)
                burst = amplitude * _burst(
                    length, sample_rate=sample_rate, low_hz=band[0], high_hz=band[1], rng=rng
                )
                out[start : start + len(burst)] += burst
                found.append(onset)
            if murmur:
                start = int((t + S1_S) * sample_rate)
                gap = systole - S1_S - 0.02
                out[start : start + int(gap * sample_rate)] += murmur * _burst(
                    gap, sample_rate=sample_rate, low_hz=150.0, high_hz=400.0, rng=rng
                )
        t += period
        index += 1
    if snr_db is not None:
        power = np.mean(out**2)
        out = out + rng.standard_normal(len(out)) * np.sqrt(power / 10 ** (snr_db / 10))
    return out.astype(np.float32), np.array(s1), np.array(s2)
