"""Training augmentation keeps the signal usable and changes what it should."""

from __future__ import annotations

import numpy as np
import pytest

from ml import augment
from tests.ml.conftest import beat_train

RATE = 2000


def test_it_returns_unit_rms_float_signals() -> None:
    rng = np.random.default_rng(0)
    wave = beat_train(bpm=72, duration_s=10, sample_rate=RATE)
    for _ in range(10):
        out = augment.augment(wave, sample_rate=RATE, rng=rng)
        assert np.sqrt(np.mean(out**2)) == pytest.approx(1.0, abs=1e-3)
        assert len(out) >= len(wave) // 2


def test_it_adds_noise_at_the_requested_snr() -> None:
    wave = np.sin(np.arange(20000) / 10)
    noisy = augment.add_noise(wave, snr_db=10.0, rng=np.random.default_rng(1))
    ratio = np.mean(wave**2) / np.mean((noisy - wave) ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(10.0, abs=0.5)


def test_it_changes_speed_by_the_factor() -> None:
    assert len(augment.change_speed(np.zeros(2000), factor_twentieths=22)) == pytest.approx(
        2000 * 20 / 22, abs=1
    )


def test_it_applies_a_smooth_random_device_response() -> None:
    rng = np.random.default_rng(3)
    wave = np.sin(2 * np.pi * 100 * np.arange(4 * RATE) / RATE)
    shaped = augment.random_eq(wave, sample_rate=RATE, rng=rng)
    assert len(shaped) == len(wave)
    gain_db = 10 * np.log10(np.mean(shaped**2) / np.mean(wave**2))
    octaves = abs(np.log2(100) - np.mean(np.log2(augment.EQ_POINTS_HZ)))
    assert 0.01 < abs(gain_db) <= augment.EQ_GAIN_DB + augment.EQ_TILT_DB_PER_OCTAVE * octaves + 0.1


def test_it_uses_the_device_response_and_wider_speed_range_when_asked() -> None:
    rng = np.random.default_rng(5)
    wave = beat_train(bpm=72, duration_s=10, sample_rate=RATE)
    for _ in range(5):
        out = augment.augment(wave, sample_rate=RATE, rng=rng, eq_probability=1.0, speed_range=(16, 24))
        assert np.sqrt(np.mean(out**2)) == pytest.approx(1.0, abs=1e-3)
