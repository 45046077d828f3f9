"""Short training runs on synthetic recordings (TensorFlow)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml import training
from ml.datasets import Dataset, Entry
from ml.features import FeatureConfig
from ml.training import HISTORY_KEYS, TrainResult, TrainSettings, train
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


def test_source_head_training_saves_a_model_that_loads_with_its_heads(tmp_path: Path) -> None:
    import keras

    from ml.inference import load_model
    from ml.models import source_head_count

    data = _four_site_dataset()
    settings = TrainSettings(
        architecture="gru", units=8, epochs=2, windows_per_recording=2, source_heads=True
    )
    config = FeatureConfig(n_mels=8)
    result = train(
        data,
        data,
        classes=("normal", "abnormal"),
        positive_class="abnormal",
        feature_config=config,
        settings=settings,
    )
    assert source_head_count(result.model) == 4
    assert len(result.history["accuracy"]) == 2
    assert all(0 < loss < 1.2 for loss in result.history["loss"])
    manifest = training.save_training_bundle(
        result,
        out_dir=tmp_path,
        name="heads",
        version="0.0.1",
        classes=("normal", "abnormal"),
        positive_class="abnormal",
        feature_config=config,
        settings=settings,
        data_fingerprint="synthetic",
        card_text="",
        metrics={},
    )
    loaded = load_model(tmp_path, manifest)
    windows = np.random.default_rng(1).standard_normal((3, *config.window_shape)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(windows)),
        keras.ops.convert_to_numpy(result.model(windows)),
        atol=1e-6,
    )


def _scripted_training(
    monkeypatch: pytest.MonkeyPatch, scores: list[float], settings: TrainSettings
) -> tuple[TrainResult, list[list[np.ndarray]], dict[str, int]]:
    """Train with the validation score of each epoch taken from ``scores``; returns the result,
    the served model's weights at every scoring (each epoch's end, then the final metrics) and
    how often windows were drawn."""
    snapshots: list[list[np.ndarray]] = []
    calls = {"augmented": 0, "chosen": 0, "features": 0}
    real_probabilities, real_epoch_windows = training._recording_probabilities, training._epoch_windows
    real_choose, real_batch = training._choose_windows, training.batch_windows
    epoch_scores = iter(scores)

    def probabilities(model: Any, batch: Any, count: int) -> np.ndarray:
        snapshots.append([weights.copy() for weights in model.get_weights()])
        return real_probabilities(model, batch, count)

    def counted(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(training, "_recording_probabilities", probabilities)
    monkeypatch.setattr(training, "_validation_score", lambda *_, **__: (next(epoch_scores), 0.7, 0.5))
    monkeypatch.setattr(training, "_epoch_windows", counted("augmented", real_epoch_windows))
    monkeypatch.setattr(training, "_choose_windows", counted("chosen", real_choose))
    monkeypatch.setattr(training, "batch_windows", counted("features", real_batch))
    data = _four_site_dataset()
    result = train(
        data, data, classes=("normal", "abnormal"), positive_class="abnormal",
        feature_config=FeatureConfig(n_mels=8), settings=settings,
    )  # fmt: skip
    return result, snapshots, calls


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_it_restores_the_best_epochs_weights_when_training_runs_every_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = TrainSettings(architecture="gru", units=4, epochs=4, patience=10, augment=False)
    result, snapshots, calls = _scripted_training(monkeypatch, [0.5, 0.9, 0.6, 0.7], settings)
    assert result.history["val_score"] == [0.5, 0.9, 0.6, 0.7]
    assert set(result.history) == set(HISTORY_KEYS)
    assert all(len(values) == 4 for values in result.history.values())
    epoch_weights, final = snapshots[:4], snapshots[4]
    assert not _same(epoch_weights[1], epoch_weights[3])  # training moved the weights on
    assert _same(final, epoch_weights[1])
    assert _same([w.numpy() for w in result.model.weights], epoch_weights[1])
    # without augmentation the features are computed once (training and validation
    # recordings), and new windows are chosen from them for every epoch
    assert calls == {"augmented": 0, "chosen": 4, "features": 2}


def test_it_stops_after_patience_epochs_without_a_better_score(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TrainSettings(architecture="gru", units=4, epochs=8, patience=2, windows_per_recording=2)
    scores = [0.5, 0.9, 0.9, 0.7, 1.0, 1.0, 1.0, 1.0]  # a tie is no improvement
    result, snapshots, calls = _scripted_training(monkeypatch, scores, settings)
    assert result.history["val_score"] == [0.5, 0.9, 0.9, 0.7]
    assert _same(snapshots[-1], snapshots[1])
    assert not _same(snapshots[-1], snapshots[3])
    assert calls["augmented"] == 4  # every epoch augmented afresh


def test_it_trains_the_same_model_from_the_same_seed() -> None:
    data = _four_site_dataset()
    settings = TrainSettings(architecture="gru", units=4, epochs=2, windows_per_recording=2)
    kwargs: dict[str, Any] = {
        "classes": ("normal", "abnormal"), "positive_class": "abnormal",
        "feature_config": FeatureConfig(n_mels=8),
    }  # fmt: skip
    first = train(data, data, settings=settings, **kwargs)
    second = train(data, data, settings=settings, **kwargs)
    other = train(data, data, settings=dataclasses.replace(settings, seed=8), **kwargs)
    assert first.history == second.history
    assert _same(first.model.get_weights(), second.model.get_weights())
    assert not _same(first.model.get_weights(), other.model.get_weights())
