"""Diff two model versions over the recordings both have read.

Agreement, a matrix of label A -> label B, the recordings whose label changed
(with both versions' probabilities) and, where recordings carry ground truth,
each version's metrics on exactly those recordings, side by side.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from jobs.models import ModelVersion, Prediction, Recording
from jobs.services import access
from ml import scoring

MAX_CHANGES = 500


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


@dataclass
class Diff:
    version_a: str
    version_b: str
    compared: int = 0
    agreed: int = 0
    matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    changed: int = 0
    metrics_a: dict[str, Any] = field(default_factory=dict)
    metrics_b: dict[str, Any] = field(default_factory=dict)

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
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement_rate": self.agreement_rate,
            "changed": self.changed,
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
    """The diff over `recordings` (already scoped to what the caller may see)."""
    pairs = _paired_predictions(version_a, version_b, recordings)
    diff = Diff(version_a=version_a.slug, version_b=version_b.slug, compared=len(pairs))
    matrix: dict[str, Counter[str]] = {}
    for a, b in pairs:
        matrix.setdefault(a["label"], Counter())[b["label"]] += 1
        if a["label"] == b["label"]:
            diff.agreed += 1
            continue
        diff.changed += 1
        if len(diff.changes) < max_changes:
            diff.changes.append(_change(a, b))
    diff.matrix = {label: dict(sorted(row.items())) for label, row in sorted(matrix.items())}
    truthful = [(a, b) for a, b in pairs if a["recording__label"]]
    diff.metrics_a = truth_metrics([(a["recording__label"], a["label"]) for a, _ in truthful], version_a)
    diff.metrics_b = truth_metrics([(a["recording__label"], b["label"]) for a, b in truthful], version_b)
    return diff


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


def truth_metrics(pairs: list[tuple[str, str]], version: ModelVersion) -> dict[str, Any]:
    """Accuracy and recall per true class over (truth, predicted) pairs; binary adds sens/spec."""
    if not pairs:
        return {"count": 0}
    correct = sum(truth == predicted for truth, predicted in pairs)
    per_class: dict[str, float] = {}
    for label in sorted({truth for truth, _ in pairs}):
        of_class = [predicted for truth, predicted in pairs if truth == label]
        per_class[label] = sum(predicted == label for predicted in of_class) / len(of_class)
    metrics: dict[str, Any] = {"count": len(pairs), "accuracy": correct / len(pairs), "recall": per_class}
    positive = scoring.graded_class(list(version.classes), version.manifest.get("positive_class"))
    if positive is not None:
        negative = next(label for label in version.classes if label != positive)
        rates = scoring.binary_rates(
            tp=sum(truth == positive == predicted for truth, predicted in pairs),
            fn=sum(truth == positive != predicted for truth, predicted in pairs),
            tn=sum(truth == negative == predicted for truth, predicted in pairs),
            fp=sum(truth == negative != predicted for truth, predicted in pairs),
        )
        metrics["sensitivity"] = rates.sensitivity
        metrics["specificity"] = rates.specificity
    return metrics


def visible_scope(user: User, batch_id: str | None = None) -> QuerySet[Recording]:
    """The recordings a diff may cover: the user's, optionally one batch's (read or uploaded)."""
    recordings = access.visible_recordings(user)
    if batch_id:
        batch = access.get_batch(user, batch_id)
        recordings = recordings.filter(Q(batch=batch) | Q(analyses__batch=batch))
    return recordings
