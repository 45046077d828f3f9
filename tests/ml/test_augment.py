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
