"""Recording-level aggregation of window probabilities and screening metrics.

Pure numpy, shared by training, evaluation, the inference engine and the
platform (reports, comparisons, site calibrations, plots), so a recording is
scored, and a batch graded, the same way everywhere: the positive class and
sensitivity, specificity and MAcc are defined here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

AGGREGATIONS = ("mean",)
# The class a two-class screening model flags, when its bundle declares none.
SCREENING_POSITIVE = "abnormal"

# A rate is a fraction, one or one per threshold.
Rate = TypeVar("Rate", float, npt.NDArray[np.float64])


def positive_class(classes: Sequence[str], declared: str | None) -> str | None:
    """The class a two-class model's threshold applies to: the one its bundle declares.

    None for models of other class counts, and when none (or another name) is
    declared: those decide by the most probable class.
    """
    return declared if declared is not None and len(classes) == 2 and declared in classes else None


def graded_class(classes: Sequence[str], declared: str | None) -> str | None:
    """The class sensitivity is measured on: the declared positive class, else ``abnormal``,
    else the second class; None unless there are two classes."""
    if len(classes) != 2:
        return None
    if found := positive_class(classes, declared):
        return found
    return SCREENING_POSITIVE if SCREENING_POSITIVE in classes else classes[1]


def macc(sensitivity: Rate, specificity: Rate) -> Rate:
    """MAcc: the mean of sensitivity and specificity."""
    return (sensitivity + specificity) / 2


@dataclass(frozen=True)
class BinaryRates:
    """Sensitivity, specificity and MAcc; None where a class has no recordings."""

    sensitivity: float | None
    specificity: float | None

    @property
    def macc(self) -> float | None:
        if self.sensitivity is None or self.specificity is None:
            return None
        return macc(self.sensitivity, self.specificity)


def binary_rates(*, tp: float, fn: float, tn: float, fp: float) -> BinaryRates:
    """The rates of true positives, false negatives, true negatives and false positives (counts)."""
    return BinaryRates(sensitivity=_ratio(tp, tp + fn), specificity=_ratio(tn, tn + fp))


def rates_at(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity at each threshold, a score at or above it called positive.

    ``truth`` is boolean (positive class); both classes must be present.
    """
    positives, negatives = np.sort(scores[truth]), np.sort(scores[~truth])
    sensitivity = 1 - np.searchsorted(positives, thresholds, side="left") / len(positives)
    specificity = np.searchsorted(negatives, thresholds, side="left") / len(negatives)
    return sensitivity, specificity


def aggregate_windows(
    window_probabilities: np.ndarray, recording_index: np.ndarray, *, num_recordings: int
) -> np.ndarray:
    """Mean class probabilities per recording: ``(num_recordings, classes)``."""
    totals = np.zeros((num_recordings, window_probabilities.shape[1]), dtype=np.float64)
    np.add.at(totals, recording_index, window_probabilities)
    counts = np.bincount(recording_index, minlength=num_recordings).reshape(-1, 1)
    return totals / np.maximum(counts, 1)


def decide(
    probabilities: np.ndarray,
    *,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
) -> np.ndarray:
    """Class index per recording: threshold on the positive class, else the most probable."""
    if positive_class is None or len(classes) != 2:
        most_probable: npt.NDArray[np.intp] = np.argmax(probabilities, axis=1)
        return most_probable
    positive = list(classes).index(positive_class)
    negative = 1 - positive
    return np.where(probabilities[:, positive] >= threshold, positive, negative)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def roc_auc(truth_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties halved); None with one class only."""
    positives = scores[truth_positive]
    negatives = scores[~truth_positive]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    combined = np.concatenate([positives, negatives])[order]
    ranks[order] = _tied_ranks(combined)
    positive_ranks = ranks[: len(positives)].sum()
    u = positive_ranks - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def _tied_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, len(sorted_values) + 1, dtype=np.float64)
    _, starts, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for start, count in zip(starts, counts, strict=True):
        if count > 1:
            ranks[start : start + count] = ranks[start : start + count].mean()
    return ranks


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def screening_metrics(
    truth: np.ndarray,
    probabilities: np.ndarray,
    *,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
) -> dict[str, object]:
    """Accuracy, precision, sensitivity, specificity, MAcc, F1, ROC AUC, per-class recall.

    ``truth`` holds class indices; ``probabilities`` is ``(recordings, classes)``.
    Binary measures treat ``graded_class`` (the declared positive class, else
    ``abnormal``, else the second class) as positive; for more classes
    ``macro_recall`` is the headline.
    """
    predicted = decide(probabilities, classes=classes, positive_class=positive_class, threshold=threshold)
    matrix = confusion_matrix(truth, predicted, num_classes=len(classes))
    recalls = {name: _ratio(matrix[i, i], matrix[i].sum()) for i, name in enumerate(classes)}
    present = [value for value in recalls.values() if value is not None]
    metrics: dict[str, object] = {
        "count": int(len(truth)),
        "accuracy": _ratio(np.trace(matrix), matrix.sum()),
        "per_class_recall": recalls,
        "macro_recall": float(np.mean(present)) if present else None,
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
    }
    if len(classes) == 2:
        metrics.update(_binary_metrics(matrix, truth, probabilities, classes, positive_class))
    return metrics


def _binary_metrics(
    matrix: np.ndarray,
    truth: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    positive_class: str | None,
) -> dict[str, object]:
    graded = graded_class(classes, positive_class)
    assert graded is not None  # called for two classes only
    positive = list(classes).index(graded)
    negative = 1 - positive
    tp, fn = matrix[positive, positive], matrix[positive, negative]
    tn, fp = matrix[negative, negative], matrix[negative, positive]
    rates = binary_rates(tp=tp, fn=fn, tn=tn, fp=fp)
    return {
        "precision": _ratio(tp, tp + fp),
        "sensitivity": rates.sensitivity,
        "specificity": rates.specificity,
        "macc": rates.macc,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": roc_auc(truth == positive, probabilities[:, positive]),
    }


def best_threshold(truth_positive: np.ndarray, scores: np.ndarray, *, low: float, high: float) -> float:
    """Threshold in [low, high] maximising the mean of sensitivity and specificity."""
    candidates = np.unique(np.clip(np.concatenate([scores, [0.5]]), low, high))
    best, best_macc = 0.5, -1.0
    for candidate in candidates:
        predicted = scores >= candidate
        sensitivity = np.mean(predicted[truth_positive]) if truth_positive.any() else 0.0
        specificity = np.mean(~predicted[~truth_positive]) if (~truth_positive).any() else 0.0
        score = macc(sensitivity, specificity)
        if score > best_macc:
            best, best_macc = float(candidate), float(score)
    return best
