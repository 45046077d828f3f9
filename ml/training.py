"""Train a window classifier on labelled recordings and write it as a bundle.

Steps: split recordings (hold out whole source groups, then a stratified
validation share of what is left), augment waveforms every epoch, cut them into
windows, weight windows so each source group's classes count equally, train
with one ``fit()`` (``ml.fitting.EpochWindows`` re-draws the windows every
epoch, ``ml.fitting.RecordingScore`` scores the validation recordings,
``EarlyStopping`` stops and restores the best-scoring weights), then save
weights, manifest, metrics and learning curves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.augment import SPEED_DENOMINATOR, augment
from ml.bundle import Manifest, save_bundle
from ml.calibration import balanced_weights
from ml.datasets import Dataset
from ml.features import FeatureConfig, WindowBatch, batch_windows
from ml.plots import draw_curves
from ml.scoring import aggregate_windows, best_threshold, screening_metrics

DEFAULT_EPOCHS = 20
DEFAULT_PATIENCE = 5
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_WINDOWS_PER_RECORDING = 4
DEFAULT_VALIDATION_SHARE = 0.15
MAX_SAMPLE_WEIGHT = 5.0
THRESHOLD_RANGE = (0.2, 0.8)
PREDICT_CHUNK = 1024
SNR_SPAN_DB = 25.0
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_score")
# Recording weights: "class-in-source" balances classes within each source, sources
# by size; "source" weighs every (source, class) pair the same, so no site dominates.
BALANCES = ("class-in-source", "source")
IGNORED = -1  # a class target that adds no loss (a head of another source)
# Where the site-adversarial and the source-heads trainers log the classifier's own
# loss and accuracy.
ADVERSARIAL_LOGS = {"loss": "probabilities_loss", "accuracy": "probabilities_accuracy"}
SOURCE_HEAD_LOGS = {"accuracy": "own_source_accuracy"}
BATCH_ORDER_STREAM = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run (epochs, batch in windows, seed)."""

    architecture: str = "cnn_gru"
    units: int = 32
    conv_filters: tuple[int, ...] = (24, 32)
    bidirectional: bool = False
    attention: bool = False
    dropout: float = 0.2
    standardize_windows: bool = False
    mixstyle: bool = False
    epochs: int = DEFAULT_EPOCHS
    patience: int = DEFAULT_PATIENCE
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    windows_per_recording: int = DEFAULT_WINDOWS_PER_RECORDING
    augment: bool = True
    noise_probability: float = 0.5
    min_snr_db: float = 5.0
    eq_probability: float = 0.0
    max_speed_change: float = 0.1
    site_adversarial: float = 0.0
    # One classifier head per training source, their logits averaged when served.
    source_heads: bool = False
    normalize_inputs: bool = False
    input_noise: float = 0.0
    balance: str = BALANCES[0]  # one of BALANCES
    # More than 1: the saved model averages that many networks trained with
    # consecutive seeds from ``seed`` (``ensemble``).
    members: int = 1
    seed: int = 7

    def model_config(
        self, *, input_shape: tuple[int, int], num_classes: int, num_sources: int = 0
    ) -> dict[str, Any]:
        """Keyword arguments for ``ml.models.build_model`` (``num_sources``: training sources,
        for ``source_heads``)."""
        return {
            "architecture": self.architecture,
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "units": self.units,
            "conv_filters": list(self.conv_filters),
            "bidirectional": self.bidirectional,
            "attention": self.attention,
            "dropout": self.dropout,
            "standardize_windows": self.standardize_windows,
            **({"mixstyle": True} if self.mixstyle else {}),
            **({"normalize_inputs": True} if self.normalize_inputs else {}),
            **({"input_noise": self.input_noise} if self.input_noise else {}),
            **({"members": self.members} if self.members > 1 else {}),
            **({"source_heads": num_sources} if self.source_heads and num_sources > 1 else {}),
        }


@dataclass
class TrainResult:
    """The trained model, its validation metrics and per-epoch history."""

    model: Any
    threshold: float
    validation: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def split_validation(dataset: Dataset, *, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, validation), stratified by (group, label); a patient's
    recordings stay on one side (datasets without patient ids split by recording)."""
    rng = np.random.default_rng(seed)
    strata = np.char.add(np.char.add(dataset.groups, "|"), dataset.labels)
    subjects = dataset.subjects
    chosen: set[str] = set()
    for stratum in np.unique(strata):
        members = rng.permutation(np.unique(subjects[strata == stratum]))
        chosen.update(members[: int(round(share * len(members)))].tolist())
    validation = np.isin(subjects, list(chosen))
    return ~validation, validation


def recording_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Weights that balance classes within each group, clipped and scaled to mean 1."""
    weights = np.ones(len(labels), dtype=np.float64)
    for group in np.unique(groups):
        in_group = groups == group
        classes = np.unique(labels[in_group])
        for label in classes:
            members = in_group & (labels == label)
            weights[members] = in_group.sum() / (len(classes) * members.sum())
    weights = np.clip(weights, 1 / MAX_SAMPLE_WEIGHT, MAX_SAMPLE_WEIGHT)
    return weights / float(weights.mean())


def train(
    train_set: Dataset,
    validation_set: Dataset,
    *,
    classes: Sequence[str],
    positive_class: str | None,
    feature_config: FeatureConfig,
    settings: TrainSettings,
) -> TrainResult:
    """Train a model; returns it with the best validation weights restored.

    One epoch = every training recording augmented afresh and cut into at most
    ``windows_per_recording`` windows; training stops after ``patience`` epochs
    without a better recording-level validation score (MAcc, or macro recall).
    """
    import keras

    from ml.fitting import EpochWindows, RecordingScore

    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    sites, site_truth = np.unique(train_set.groups, return_inverse=True)
    adversarial = settings.site_adversarial > 0 and len(sites) > 1
    heads = settings.source_heads and len(sites) > 1
    model, trainer = _compiled_model(
        settings,
        feature_config=feature_config,
        num_classes=len(classes),
        num_sites=len(sites) if adversarial or heads else 0,
    )
    class_of = {name: index for index, name in enumerate(classes)}
    truth = np.array([class_of[label] for label in train_set.labels])
    targets: Any = truth
    if adversarial:
        targets = {"probabilities": truth, "site": site_truth}
    elif heads:
        targets = source_head_targets(truth, site_truth, len(sites))
    weights = (
        balanced_weights(train_set.labels, train_set.groups)
        if settings.balance == "source"
        else recording_weights(train_set.labels, train_set.groups)
    )
    validation_truth = np.array([class_of[label] for label in validation_set.labels])
    validation_batch = batch_windows(list(validation_set.samples), config=feature_config)
    scoring: dict[str, Any] = {"classes": classes, "positive_class": positive_class}
    # Without waveform augmentation every epoch would compute the same features: do it once.
    fixed = None if settings.augment else batch_windows(list(train_set.samples), config=feature_config)
    started = time.perf_counter()
    windows = EpochWindows(
        functools.partial(
            _draw_windows, train_set, fixed, feature_config=feature_config, settings=settings, rng=rng
        ),
        targets=targets,
        weights=weights,
        batch_size=settings.batch_size,
        # the batch order has its own stream, so the windows drawn follow from the seed alone
        rng=np.random.default_rng((settings.seed, BATCH_ORDER_STREAM)),
    )
    if settings.normalize_inputs:
        model.get_layer("normalize").adapt(fixed.windows if fixed is not None else windows.windows)
    # the classifier's own loss and accuracy, not the sum with the site head's
    logged = ADVERSARIAL_LOGS if adversarial else SOURCE_HEAD_LOGS if heads else {}
    callbacks = [
        RecordingScore(
            functools.partial(_epoch_score, model, validation_batch, validation_truth, scoring),
            loss_key=logged.get("loss", "loss"),
        ),
        # restores the best epoch's weights whether or not it stopped early (Keras 3)
        keras.callbacks.EarlyStopping(
            monitor="val_score", mode="max", patience=settings.patience, restore_best_weights=True
        ),
    ]
    fitted = trainer.fit(windows, epochs=settings.epochs, callbacks=callbacks, shuffle=False, verbose=0)
    history = {key: [float(v) for v in fitted.history.get(logged.get(key, key), [])] for key in HISTORY_KEYS}
    threshold, validation = _validated(model, validation_batch, validation_truth, scoring)
    return TrainResult(model, threshold, validation, history, time.perf_counter() - started)


def _epoch_score(
    model: Any, batch: Any, truth: np.ndarray, scoring: dict[str, Any]
) -> tuple[float, float, float]:
    """(score, loss, accuracy) of the validation recordings at the model's current weights."""
    probabilities = _recording_probabilities(model, batch, len(truth))
    return _validation_score(probabilities, truth, **scoring)


def _validated(
    model: Any, batch: Any, truth: np.ndarray, scoring: dict[str, Any]
) -> tuple[float, dict[str, object]]:
    """(threshold chosen on the validation recordings, their metrics at it)."""
    probabilities = _recording_probabilities(model, batch, len(truth))
    threshold = _pick_threshold(probabilities, truth, **scoring)
    return threshold, screening_metrics(truth, probabilities, threshold=threshold, **scoring)


def ensemble(
    results: Sequence[TrainResult],
    validation_set: Dataset,
    *,
    classes: Sequence[str],
    positive_class: str | None,
    feature_config: FeatureConfig,
    settings: TrainSettings,
) -> TrainResult:
    """One model averaging the trained members' probabilities, scored on the validation set."""
    from ml.models import build_model, source_head_count

    config = settings.model_config(
        input_shape=feature_config.window_shape,
        num_classes=len(classes),
        num_sources=source_head_count(results[0].model),
    )
    model = build_model(**{**config, "input_shape": feature_config.window_shape, "members": len(results)})
    for index, member in enumerate(results):
        model.get_layer(f"member_{index}").set_weights(member.model.get_weights())
    class_of = {name: index for index, name in enumerate(classes)}
    truth = np.array([class_of[label] for label in validation_set.labels])
    batch = batch_windows(list(validation_set.samples), config=feature_config)
    scoring: dict[str, Any] = {"classes": classes, "positive_class": positive_class}
    threshold, validation = _validated(model, batch, truth, scoring)
    seconds = sum(member.seconds for member in results)
    return TrainResult(model, threshold, validation, results[0].history, seconds)


def _compiled_model(
    settings: TrainSettings, *, feature_config: FeatureConfig, num_classes: int, num_sites: int = 0
) -> tuple[Any, Any]:
    """(served model, model to fit): the same one, or with ``num_sites`` > 0 the served
    model plus a source-site head behind a gradient reversal (only that one is compiled)."""
    import keras

    from ml.models import (
        build_model,
        own_source_accuracy,
        own_source_loss,
        source_heads_trainer,
        with_site_adversary,
    )

    heads = num_sites if settings.source_heads else 0
    config = settings.model_config(
        input_shape=feature_config.window_shape, num_classes=num_classes, num_sources=heads
    )
    model = build_model(**{**config, "input_shape": feature_config.window_shape})
    loss = "sparse_categorical_crossentropy"
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    if heads > 1:
        trainer = source_heads_trainer(model)
        trainer.compile(optimizer=optimizer, loss=own_source_loss, weighted_metrics=[own_source_accuracy])
        return model, trainer
    if num_sites == 0:
        model.compile(optimizer=optimizer, loss=loss, weighted_metrics=["accuracy"])
        return model, model
    trainer = with_site_adversary(model, num_sites=num_sites, strength=settings.site_adversarial)
    trainer.compile(
        optimizer=optimizer,
        loss={"probabilities": loss, "site": loss},
        weighted_metrics={"probabilities": ["accuracy"]},
    )
    return model, trainer


def source_head_targets(truth: np.ndarray, sources: np.ndarray, num_sources: int) -> np.ndarray:
    """``(recordings, num_sources)`` class targets: each recording's class at its own source's
    head, ``IGNORED`` at the others."""
    targets = np.full((len(truth), num_sources), IGNORED, dtype=np.int64)
    targets[np.arange(len(truth)), sources] = truth
    return targets


def _draw_windows(
    dataset: Dataset,
    fixed: WindowBatch | None,
    *,
    feature_config: FeatureConfig,
    settings: TrainSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's windows and their recordings: augmented afresh, or chosen anew from ``fixed``."""
    if fixed is None:
        return _epoch_windows(dataset, feature_config=feature_config, settings=settings, rng=rng)
    chosen = _choose_windows(fixed.recording_index, settings.windows_per_recording, rng)
    return fixed.windows[chosen], fixed.recording_index[chosen]


def _epoch_windows(
    dataset: Dataset,
    *,
    feature_config: FeatureConfig,
    settings: TrainSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented windows of every recording, at most ``windows_per_recording`` each,
    with the index of the recording each came from."""
    rate = feature_config.sample_rate
    snr_db = (settings.min_snr_db, settings.min_snr_db + SNR_SPAN_DB)
    speed_range = (
        round(SPEED_DENOMINATOR * (1 - settings.max_speed_change)),
        round(SPEED_DENOMINATOR * (1 + settings.max_speed_change)),
    )
    waves = [
        augment(
            samples,
            sample_rate=rate,
            rng=rng,
            noise_probability=settings.noise_probability,
            snr_db=snr_db,
            eq_probability=settings.eq_probability,
            speed_range=speed_range,
        )
        if settings.augment
        else samples
        for samples in dataset.samples
    ]
    batch = batch_windows(waves, config=feature_config)
    chosen = _choose_windows(batch.recording_index, settings.windows_per_recording, rng)
    return batch.windows[chosen], batch.recording_index[chosen]


def _choose_windows(owners: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(len(owners))
    seen: dict[int, int] = {}
    chosen = []
    for row in order:
        owner = int(owners[row])
        if seen.get(owner, 0) < limit:
            seen[owner] = seen.get(owner, 0) + 1
            chosen.append(row)
    return np.sort(np.array(chosen, dtype=np.int64))


def _recording_probabilities(model: Any, batch: Any, count: int) -> np.ndarray:
    import tensorflow as tf

    parts = [
        np.asarray(model(tf.constant(batch.windows[start : start + PREDICT_CHUNK]), training=False))
        for start in range(0, len(batch.windows), PREDICT_CHUNK)
    ]
    window_probabilities = np.concatenate(parts) if parts else np.zeros((0, 1))
    return aggregate_windows(window_probabilities, batch.recording_index, num_recordings=count)


def _validation_score(
    probabilities: np.ndarray, truth: np.ndarray, *, classes: Sequence[str], positive_class: str | None
) -> tuple[float, float, float]:
    """(score to maximise, recording-level log loss, accuracy); score is MAcc or macro recall."""
    metrics = screening_metrics(
        truth, probabilities, classes=classes, positive_class=positive_class, threshold=0.5
    )
    picked = np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)
    loss = float(-np.mean(np.log(picked))) if len(truth) else 0.0
    key = "macc" if len(classes) == 2 else "macro_recall"
    score = metrics.get(key)
    return float(score) if isinstance(score, float) else 0.0, loss, float(metrics["accuracy"] or 0.0)  # type: ignore[arg-type]


def _pick_threshold(
    probabilities: np.ndarray, truth: np.ndarray, *, classes: Sequence[str], positive_class: str | None
) -> float:
    if positive_class is None or len(classes) != 2:
        return 0.5
    positive = list(classes).index(positive_class)
    return best_threshold(
        truth == positive, probabilities[:, positive], low=THRESHOLD_RANGE[0], high=THRESHOLD_RANGE[1]
    )


def save_training_bundle(
    result: TrainResult,
    *,
    out_dir: Path,
    name: str,
    version: str,
    classes: Sequence[str],
    positive_class: str | None,
    feature_config: FeatureConfig,
    settings: TrainSettings,
    data_fingerprint: str,
    card_text: str,
    metrics: dict[str, Any],
    calibration: dict[str, Any] | None = None,
) -> Manifest:
    """Write weights, manifest, card, metrics JSON and learning-curve PNG to ``out_dir``.

    With ``calibration`` its threshold (on calibrated probabilities) replaces the
    one chosen on the validation recordings.
    """
    from ml.models import source_head_count

    manifest = Manifest(
        name=name,
        version=version,
        architecture=settings.architecture,
        classes=tuple(classes),
        sample_rate=feature_config.sample_rate,
        feature_config=feature_config.to_dict(),
        feature_fingerprint=feature_config.fingerprint(),
        model_config=settings.model_config(
            input_shape=feature_config.window_shape,
            num_classes=len(classes),
            num_sources=source_head_count(result.model),
        ),
        decision_threshold=round(calibration["threshold"] if calibration else result.threshold, 4),
        positive_class=positive_class,
        metrics=metrics,
        training_data_fingerprint=data_fingerprint,
        calibration=calibration or {},
    )
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / manifest.weights_file
        result.model.save_weights(weights)
        curves = Path(scratch) / "curves.png"
        curves.write_bytes(draw_curves(result.history))
        history = Path(scratch) / "history.json"
        history.write_text(json.dumps({"settings": dataclasses.asdict(settings), **result.history}, indent=1))
        return save_bundle(
            out_dir,
            manifest=manifest,
            weights_path=weights,
            card_text=card_text,
            extra_files={"curves.png": curves, "history.json": history},
        )
