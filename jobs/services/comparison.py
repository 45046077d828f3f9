"""Diff two model versions over the recordings both have read.

Agreement, a matrix of label A -> label B, the recordings whose label changed
(with both versions' probabilities) and, where recordings carry ground truth,
each version's metrics on exactly those recordings, side by side. A binary and a
multi-class version are compared in the binary classes (ml.labels maps the
multi-class labels), so both get sensitivity, specificity and MAcc.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from jobs.models import ModelVersion, Prediction, Recording
from jobs.services import access
from ml import labels, scoring

MAX_CHANGES = 500
# Where ground truth (rather than a version's label) has no binary counterpart.
TRUTH = "ground truth"


@dataclass(frozen=True)
class Change:
    recording_id: int
    path: str
    batch_id: str
    truth: str
    label_a: str
    label_b: str
    probabilities_a: dict[str, float]
    probabilities_b: dict[str, float]


@dataclass(frozen=True)
class LeftOut:
    """Recordings a binary reading could not count: `source` (a version, or ground truth)
    gave them `label`, which has no binary counterpart."""

    source: str
    label: str
    count: int

    @property
    def reason(self) -> str:
        recordings = "recording" if self.count == 1 else "recordings"
        if self.source == TRUTH:
            return (
                f"{self.count} {recordings} left out of the figures against ground truth:"
                f" truth {self.label} has no binary counterpart"
            )
        return f"{self.count} {recordings} left out: class {self.label} has no binary counterpart"


@dataclass(frozen=True)
class _Reading:
    """A binary and a multi-class version: the multi-class one's labels read through a map."""

    multi_class: ModelVersion
    binary: ModelVersion
    classes: labels.BinaryReading

    def label(self, version: ModelVersion, label: str) -> str | None:
        return self.classes.to_binary(label) if version == self.multi_class else label


@dataclass(frozen=True)
class _ReadPair:
    """Both versions' prediction rows of one recording, with the labels they are compared in."""

    a: dict[str, Any]
    b: dict[str, Any]
    label_a: str
    label_b: str


@dataclass
class Diff:
    version_a: str
    version_b: str
    read_by_both: int = 0
    compared: int = 0
    agreed: int = 0
    matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    changed: int = 0
    metrics_a: dict[str, Any] = field(default_factory=dict)
    metrics_b: dict[str, Any] = field(default_factory=dict)
    label_map: dict[str, str] | None = None
    left_out: list[LeftOut] = field(default_factory=list)

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def flips(self) -> list[dict[str, Any]]:
        """The off-diagonal cells: how many recordings went from one class to another."""
        return [
            {"from": label_a, "to": label_b, "count": count}
            for label_a, row in self.matrix.items()
            for label_b, count in row.items()
            if label_a != label_b and count
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_a": self.version_a,
            "version_b": self.version_b,
            "read_by_both": self.read_by_both,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement_rate": self.agreement_rate,
            "changed": self.changed,
            "label_map": self.label_map,
            "left_out": [{**vars(left), "reason": left.reason} for left in self.left_out],
            "matrix": self.matrix,
            "flips": self.flips,
            "changes": [vars(change) for change in self.changes],
            "changes_truncated": self.changed > len(self.changes),
            "metrics": {"a": self.metrics_a, "b": self.metrics_b},
        }


def compare_versions(
    version_a: ModelVersion,
    version_b: ModelVersion,
    recordings: QuerySet[Recording],
    *,
    max_changes: int = MAX_CHANGES,
) -> Diff:
    """The diff over `recordings` (already scoped to what the caller may see).

    A binary and a multi-class version are compared in the binary classes: the
    multi-class labels (and ground truth) are read through a label map, and the
    recordings with a label the map drops (artifact) are left out and counted.
    """
    pairs = _paired_predictions(version_a, version_b, recordings)
    reading = _binary_reading(version_a, version_b)
    diff = Diff(version_a=version_a.slug, version_b=version_b.slug, read_by_both=len(pairs))
    if reading is not None:
        diff.label_map = {"version": reading.multi_class.slug, "map": reading.classes.map_name}
    left_out: Counter[tuple[str, str]] = Counter()
    read = _read_labels(pairs, reading, (version_a, version_b), left_out)
    _count_agreement(diff, read, max_changes)
    truthful = _read_truth(read, reading, left_out)
    diff.left_out = [LeftOut(source, label, count) for (source, label), count in sorted(left_out.items())]
    graded_a, graded_b = (reading.binary, reading.binary) if reading else (version_a, version_b)
    diff.metrics_a = truth_metrics([(truth, pair.label_a) for truth, pair in truthful], graded_a)
    diff.metrics_b = truth_metrics([(truth, pair.label_b) for truth, pair in truthful], graded_b)
    return diff


def _binary_reading(version_a: ModelVersion, version_b: ModelVersion) -> _Reading | None:
    """The reading of a binary and a multi-class version in the binary classes, if a map covers them."""
    for binary, multi_class in ((version_a, version_b), (version_b, version_a)):
        if labels.is_binary(binary.classes) and (found := labels.binary_reading(multi_class.classes)):
            return _Reading(multi_class=multi_class, binary=binary, classes=found)
    return None


def _read_labels(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    reading: _Reading | None,
    versions: tuple[ModelVersion, ModelVersion],
    left_out: Counter[tuple[str, str]],
) -> list[_ReadPair]:
    """The pairs whose labels both read in the compared classes; the others counted in `left_out`."""
    read = []
    for a, b in pairs:
        label_a, label_b = _label(reading, versions[0], a), _label(reading, versions[1], b)
        if label_a is None or label_b is None:
            version, row = (versions[0], a) if label_a is None else (versions[1], b)
            left_out[version.slug, row["label"]] += 1
        else:
            read.append(_ReadPair(a=a, b=b, label_a=label_a, label_b=label_b))
    return read


def _label(reading: _Reading | None, version: ModelVersion, row: dict[str, Any]) -> str | None:
    label: str = row["label"]
    return reading.label(version, label) if reading else label


def _count_agreement(diff: Diff, read: list[_ReadPair], max_changes: int) -> None:
    matrix: dict[str, Counter[str]] = {}
    for pair in read:
        matrix.setdefault(pair.label_a, Counter())[pair.label_b] += 1
        if pair.label_a == pair.label_b:
            diff.agreed += 1
            continue
        diff.changed += 1
        if len(diff.changes) < max_changes:
            diff.changes.append(_change(pair.a, pair.b))
    diff.compared = len(read)
    diff.matrix = {label: dict(sorted(row.items())) for label, row in sorted(matrix.items())}


def _read_truth(
    read: list[_ReadPair], reading: _Reading | None, left_out: Counter[tuple[str, str]]
) -> list[tuple[str, _ReadPair]]:
    """The pairs with ground truth, in the compared classes; a truth with no binary
    counterpart (artifact) is counted in `left_out`."""
    truthful = []
    for pair in read:
        truth: str = pair.a["recording__label"]
        if not truth:
            continue
        read_truth = reading.classes.to_binary(truth) if reading else truth
        if read_truth is None:
            left_out[TRUTH, truth] += 1
        else:
            truthful.append((read_truth, pair))
    return truthful


def _paired_predictions(
    version_a: ModelVersion, version_b: ModelVersion, recordings: QuerySet[Recording]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    both = recordings.filter(predictions__model_version=version_a).filter(
        predictions__model_version=version_b
    )
    fields = (
        "recording_id",
        "label",
        "probabilities",
        "recording__path",
        "recording__batch_id",
        "recording__label",
    )
    rows_a = Prediction.objects.filter(model_version=version_a, recording__in=both.values("pk")).values(
        *fields
    )
    rows_b: dict[int, dict[str, Any]] = {
        row["recording_id"]: dict(row)
        for row in Prediction.objects.filter(model_version=version_b, recording__in=both.values("pk")).values(
            "recording_id", "label", "probabilities"
        )
    }
    pairs = [(row, rows_b[row["recording_id"]]) for row in rows_a if row["recording_id"] in rows_b]
    return sorted(pairs, key=lambda pair: (pair[0]["recording__path"], pair[0]["recording_id"]))


def _change(a: dict[str, Any], b: dict[str, Any]) -> Change:
    return Change(
        recording_id=a["recording_id"],
        path=a["recording__path"],
        batch_id=str(a["recording__batch_id"]),
        truth=a["recording__label"],
        label_a=a["label"],
        label_b=b["label"],
        probabilities_a=a["probabilities"],
        probabilities_b=b["probabilities"],
    )


def truth_metrics(pairs: Sequence[tuple[str, str]], graded_as: ModelVersion) -> dict[str, Any]:
    """Accuracy and recall per true class over (truth, predicted) pairs; when `graded_as` (the
    version, or the binary one a multi-class version is read as) is binary, sensitivity,
    specificity and MAcc on its graded class."""
    if not pairs:
        return {"count": 0}
    correct = sum(truth == predicted for truth, predicted in pairs)
    per_class: dict[str, float] = {}
    for label in sorted({truth for truth, _ in pairs}):
        of_class = [predicted for truth, predicted in pairs if truth == label]
        per_class[label] = sum(predicted == label for predicted in of_class) / len(of_class)
    metrics: dict[str, Any] = {"count": len(pairs), "accuracy": correct / len(pairs), "recall": per_class}
    positive = scoring.graded_class(list(graded_as.classes), graded_as.manifest.get("positive_class"))
    if positive is not None:
        negative = next(label for label in graded_as.classes if label != positive)
        rates = scoring.binary_rates(
            tp=sum(truth == positive == predicted for truth, predicted in pairs),
            fn=sum(truth == positive != predicted for truth, predicted in pairs),
            tn=sum(truth == negative == predicted for truth, predicted in pairs),
            fp=sum(truth == negative != predicted for truth, predicted in pairs),
        )
        metrics["sensitivity"] = rates.sensitivity
        metrics["specificity"] = rates.specificity
        metrics["macc"] = rates.macc
    return metrics


def visible_scope(user: User, batch_id: str | None = None) -> QuerySet[Recording]:
    """The recordings a diff may cover: the user's, optionally one batch's (read or uploaded)."""
    recordings = access.visible_recordings(user)
    if batch_id:
        batch = access.get_batch(user, batch_id)
        recordings = recordings.filter(Q(batch=batch) | Q(analyses__batch=batch))
    return recordings
