"""Heart rate and quality verdicts on synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ml import quality
from ml.audio import decode_audio, prepare_samples
from tests.ml.conftest import beat_train, encode

RATE = 2000


@pytest.mark.parametrize("bpm", [50.0, 72.0, 96.0, 130.0])
def test_it_estimates_the_heart_rate_of_a_beat_train(bpm: float) -> None:
    audio = prepare_samples(beat_train(bpm=bpm, duration_s=12, sample_rate=4000), source_rate=4000)
    estimate = quality.heart_rate_bpm(audio.samples, sample_rate=RATE)
    assert estimate == pytest.approx(bpm, rel=0.04)


def test_it_rates_a_clean_recording_good(heart_wav: bytes) -> None:
    report = quality.assess(decode_audio(heart_wav))
    assert report.verdict == quality.GOOD
    assert report.reasons == []
    assert report.heart_rate_bpm == pytest.approx(72, rel=0.04)


def test_it_flags_clipping() -> None:
    wave = np.clip(8 * beat_train(bpm=72, duration_s=10, sample_rate=4000), -1, 1)
    report = quality.assess(decode_audio(encode(wave, sample_rate=4000, subtype="FLOAT")))
    assert report.verdict in (quality.POOR, quality.UNUSABLE)
    assert any("clipping" in reason for reason in report.reasons)


def test_it_measures_the_silent_share() -> None:
    wave = beat_train(bpm=72, duration_s=10, sample_rate=RATE)
    wave[: len(wave) // 2] = 0.0
    fraction = quality.silence_fraction(wave, sample_rate=RATE)
    assert fraction == pytest.approx(0.5, abs=0.08)  # the silence edge blurs by half a span (0.75 s)


def test_it_calls_mostly_silent_recordings_unusable() -> None:
    wave = beat_train(bpm=72, duration_s=10, sample_rate=4000)
    wave[: int(len(wave) * 0.7)] = 0.0
    report = quality.assess(decode_audio(encode(wave, sample_rate=4000, subtype="FLOAT")))
    assert report.verdict == quality.UNUSABLE
    assert any("silence" in reason for reason in report.reasons)


def test_it_calls_noise_without_rhythm_poor() -> None:
    noise = np.random.default_rng(3).standard_normal(40000) * 0.1
    report = quality.assess(decode_audio(encode(noise, sample_rate=4000, subtype="FLOAT")))
    assert report.verdict == quality.POOR
    assert report.periodicity < quality.POOR_PERIODICITY
    assert any("noisy" in reason for reason in report.reasons)


def test_it_calls_short_recordings_poor() -> None:
    label, reasons = quality.verdict(duration_s=3.0, clipping=0.0, silence=0.0, periodic=0.8)
    assert label == quality.POOR
    assert "duration" in reasons[0]


def test_it_counts_clipped_samples() -> None:
    assert quality.clipping_fraction(np.array([0.0, 1.0, -1.0, 0.5])) == pytest.approx(0.5)


@pytest.mark.parametrize("size", [1, 2, 3, 15, 16, 200])
def test_running_max_is_scipys_maximum_filter(size: int) -> None:
    from scipy import ndimage

    from ml.quality import running_max

    values = np.random.default_rng(size).random(101)
    expected = ndimage.maximum_filter1d(values, size=size, mode="nearest")
    np.testing.assert_array_equal(running_max(values, size), expected)
