"""Short training runs on synthetic recordings (TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.datasets import Dataset, Entry
from ml.features import FeatureConfig
from ml.training import TrainSettings, train
from tests.ml.conftest import beat_train

RATE = 2000


def _four_site_dataset() -> Dataset:
    """Eight recordings from four sites; 'abnormal' ones carry a continuous murmur."""
    entries, samples = [], []
    for index in range(8):
        wave = beat_train(bpm=60 + 5 * index, duration_s=10, sample_rate=RATE, seed=index)
        abnormal = index % 2 == 1
        if abnormal:
            wave = wave + 0.05 * np.random.default_rng(index).standard_normal(len(wave))
        entries.append(
            Entry(
                path=f"r{index}.wav", label="abnormal" if abnormal else "normal", group=f"site-{index // 2}"
            )
        )
        samples.append(wave.astype(np.float32))
    return Dataset(root=Path("."), entries=tuple(entries), samples=tuple(samples), fingerprint="synthetic")


def test_site_adversarial_training_reports_the_classifier_loss() -> None:
    data = _four_site_dataset()
    settings = TrainSettings(
        architecture="gru", units=8, epochs=2, windows_per_recording=2, site_adversarial=0.5
    )
    result = train(
        data,
        data,
        classes=("normal", "abnormal"),
        positive_class="abnormal",
        feature_config=FeatureConfig(n_mels=8),
        settings=settings,
    )
    # the history holds the classifier's cross-entropy alone (about ln 2 here);
    # summed with the four-site head's (about ln 4) it would pass 2
    assert len(result.history["loss"]) == 2
    assert all(0 < loss < 1.2 for loss in result.history["loss"])
    assert [layer.name for layer in result.model.layers if layer.name.startswith("site")] == []
    assert result.model.output_shape == (None, 2)
