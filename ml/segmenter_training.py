"""``python -m ml segmenter``: train the frame classifier of the heart-cycle segmenter and score it.

Trained on recordings whose folder holds a ``<stem>.tsv`` annotation next to each
audio file (CirCor 2022: ``start_s end_s state``, state 1 = S1, 2 = systole,
3 = S2, 4 = diastole, 0 = unannotated). Patients are split, never recordings:
the scores are for patients the classifier never saw.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml import segmentation
from ml.audio import DEFAULT_RATE_HZ
from ml.datasets import Dataset, load_dataset
from ml.segmentation import FRAME_RATE_HZ, S1, S2, FrameClassifier

HIDDEN_UNITS = (64, 32)
FRAMES_PER_RECORDING = 400  # frames sampled per recording per epoch
DEFAULT_EPOCHS = 8
UNANNOTATED = -1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Annotation:
    """Annotated runs ``(start_s, end_s, state index 0-3)`` of one recording."""

    runs: tuple[tuple[float, float, int], ...]

    @property
    def span(self) -> tuple[float, float]:
        """First and last annotated second."""
        return (self.runs[0][0], self.runs[-1][1]) if self.runs else (0.0, 0.0)

    def onsets_s(self, state: int) -> np.ndarray:
        """Annotated start times of ``state`` (runs that start the annotation are cut, not onsets)."""
        return np.array(
            [start for index, (start, _, kind) in enumerate(self.runs) if kind == state and index > 0]
        )

    def frame_states(self, count: int) -> np.ndarray:
        """State per frame (by its centre), ``UNANNOTATED`` outside the runs."""
        centres = (np.arange(count) + 0.5) / FRAME_RATE_HZ
        states = np.full(count, UNANNOTATED, dtype=np.int64)
        for start, end, kind in self.runs:
            states[(centres >= start) & (centres < end)] = kind
        return states


def read_annotation(path: Path, *, duration_s: float) -> Annotation:
    """Runs of a ``.tsv`` annotation inside the first ``duration_s`` seconds, unannotated rows dropped."""
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        start, end, state = float(fields[0]), float(fields[1]), int(float(fields[2]))
        if 1 <= state <= 4 and start < duration_s:
            runs.append((start, min(end, duration_s), state - 1))
    return Annotation(tuple(runs))


def annotations_for(dataset: Dataset, *, sample_rate: int) -> list[Annotation | None]:
    """The annotation of every recording of ``dataset`` (None where there is no ``.tsv``)."""
    found: list[Annotation | None] = []
    for entry, samples in zip(dataset.entries, dataset.samples, strict=True):
        path = (dataset.root / entry.path).with_suffix(".tsv")
        found.append(read_annotation(path, duration_s=len(samples) / sample_rate) if path.is_file() else None)
    return found


def patient_of(path: str) -> str:
    """CirCor's patient id: the file name up to its first underscore."""
    return Path(path).name.split("_", 1)[0]


def split_patients(paths: Sequence[str], *, test_share: float, seed: int) -> np.ndarray:
    """Boolean mask of recordings whose patient is in the test share."""
    patients = sorted({patient_of(path) for path in paths})
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(patients, size=max(1, round(test_share * len(patients))), replace=False))
    return np.array([patient_of(path) in chosen for path in paths])


def training_frames(
    samples: Sequence[np.ndarray], annotations: Sequence[Annotation], *, sample_rate: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Context windows and states of annotated frames, at most ``FRAMES_PER_RECORDING`` per recording."""
    rng = np.random.default_rng(seed)
    inputs, targets = [], []
    for wave, annotation in zip(samples, annotations, strict=True):
        features = segmentation.frame_features(wave, sample_rate=sample_rate)
        states = annotation.frame_states(len(features))
        keep = np.flatnonzero(states != UNANNOTATED)
        if len(keep) == 0:
            continue
        keep = rng.choice(keep, size=min(len(keep), FRAMES_PER_RECORDING), replace=False)
        inputs.append(segmentation.context_windows(features)[keep])
        targets.append(states[keep])
    return np.concatenate(inputs).astype(np.float32), np.concatenate(targets)


def fit_classifier(inputs: np.ndarray, targets: np.ndarray, *, epochs: int, seed: int) -> FrameClassifier:
    """A dense frame classifier fitted with Keras, returned as plain arrays."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layers = [tf.keras.Input(shape=(inputs.shape[1],))]
    layers += [tf.keras.layers.Dense(units, activation="relu") for units in HIDDEN_UNITS]
    layers.append(tf.keras.layers.Dense(4, activation="softmax"))
    model = tf.keras.Sequential(layers)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(inputs, targets, epochs=epochs, batch_size=512, verbose=2, shuffle=True)
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    prior = np.bincount(targets, minlength=4) / len(targets)
    return FrameClassifier(
        weights=tuple(np.asarray(layer.kernel.numpy()) for layer in dense),
        biases=tuple(np.asarray(layer.bias.numpy()) for layer in dense),
        log_prior=np.log(prior).astype(np.float32),
    )


def score_segmenter(
    samples: Sequence[np.ndarray],
    annotations: Sequence[Annotation],
    *,
    sample_rate: int,
    classifier: FrameClassifier,
) -> dict[str, Any]:
    """Precision, recall and F1 of S1 and S2 onsets (within 60 ms) and frame accuracy."""
    counts = {S1: np.zeros(3, np.int64), S2: np.zeros(3, np.int64)}
    correct = total = 0
    for wave, annotation in zip(samples, annotations, strict=True):
        found = segmentation.segment(wave, sample_rate=sample_rate, classifier=classifier)
        for state in (S1, S2):
            counts[state] += segmentation.onset_scores(
                found.onsets_s(state), annotation.onsets_s(state), span=annotation.span
            )
        truth = annotation.frame_states(len(found.states))
        marked = truth != UNANNOTATED
        correct += int(np.sum(found.states[marked] == truth[marked]))
        total += int(marked.sum())
    result: dict[str, Any] = {"recordings": len(samples), "frame_accuracy": correct / max(total, 1)}
    for state, name in ((S1, "s1"), (S2, "s2")):
        tp, fp, fn = (int(value) for value in counts[state])
        precision = tp / max(tp + fp, 1)
        recall = tp / max(tp + fn, 1)
        result[name] = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-12),
            "onsets": tp + fn,
        }
    return result


def annotated(dataset: Dataset, *, sample_rate: int) -> tuple[list[np.ndarray], list[Annotation], list[str]]:
    """Recordings of ``dataset`` that have an annotation with at least one run."""
    keep = [
        (wave, note, entry.path)
        for wave, note, entry in zip(
            dataset.samples, annotations_for(dataset, sample_rate=sample_rate), dataset.entries, strict=True
        )
        if note is not None and note.runs
    ]
    return [item[0] for item in keep], [item[1] for item in keep], [item[2] for item in keep]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml segmenter``."""
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with labels.csv and .tsv annotations"
    )
    parser.add_argument("--out", type=Path, required=True, help="segmenter JSON to write")
    parser.add_argument("--scores", type=Path, default=None, help="JSON with the held-out scores")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of patients held out")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("artifacts/ml-cache"))
    parser.add_argument(
        "--final", action="store_true", help="after scoring, refit on every patient before writing"
    )


def run(args: argparse.Namespace) -> int:
    """Entry point: train on the training patients, score the held-out ones, write the classifier."""
    rate = DEFAULT_RATE_HZ
    dataset = load_dataset(args.data, sample_rate=rate, min_duration_s=1.0, cache_dir=args.cache)
    waves, notes, paths = annotated(dataset, sample_rate=rate)
    held_out = split_patients(paths, test_share=args.test_share, seed=args.seed)
    train_idx, test_idx = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    inputs, targets = training_frames(
        [waves[i] for i in train_idx], [notes[i] for i in train_idx], sample_rate=rate, seed=args.seed
    )
    log.info("training on %d frames of %d recordings", len(targets), len(train_idx))
    classifier = fit_classifier(inputs, targets, epochs=args.epochs, seed=args.seed)
    scores = score_segmenter(
        [waves[i] for i in test_idx], [notes[i] for i in test_idx], sample_rate=rate, classifier=classifier
    )
    scores["held_out_patients"] = len({patient_of(paths[i]) for i in test_idx})
    scores["seed"] = args.seed
    print(json.dumps(scores, indent=2))
    if args.final:
        inputs, targets = training_frames(waves, notes, sample_rate=rate, seed=args.seed)
        classifier = fit_classifier(inputs, targets, epochs=args.epochs, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(classifier.to_json()), encoding="utf-8")
    if args.scores is not None:
        args.scores.write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return 0
