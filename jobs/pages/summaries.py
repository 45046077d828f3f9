"""Shapes a batch summary (the same one the JSON report holds) for the batch page."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConfusionMatrix:
    classes: list[str]
    rows: list[tuple[str, list[tuple[int, bool]]]]  # (true class, [(count, on the diagonal)])


@dataclass(frozen=True)
class SummaryView:
    class_counts: list[tuple[str, int, float]]  # (label, count, share of predictions)
    quality_counts: list[tuple[str, int]]
    metrics: list[tuple[str, float | None]]
    labelled: int
    confusion: ConfusionMatrix | None


METRIC_NAMES = (
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("macc", "MAcc"),
    ("accuracy", "Accuracy"),
)


def summary_view(summary: dict[str, Any], *, classes: list[str]) -> SummaryView:
    counts = dict(summary.get("class_counts") or summary.get("label_counts") or {})
    ordered = [name for name in classes if name in counts] + sorted(set(counts) - set(classes))
    predicted = sum(int(counts[name]) for name in ordered) or 1
    metrics = dict(summary.get("metrics") or {})
    return SummaryView(
        class_counts=[(name, int(counts[name]), int(counts[name]) / predicted) for name in ordered],
        quality_counts=sorted((str(k), int(v)) for k, v in (summary.get("quality_counts") or {}).items()),
        metrics=[(label, metrics.get(key)) for key, label in METRIC_NAMES if key in metrics],
        labelled=int(metrics.get("labelled", metrics.get("n", 0)) or 0),
        confusion=_confusion(metrics.get("confusion_matrix"), classes=classes),
    )


def _confusion(raw: Any, *, classes: list[str]) -> ConfusionMatrix | None:
    if not raw:
        return None
    if isinstance(raw, dict):
        names = list(raw.get("classes") or classes)
        matrix = raw.get("matrix") or []
    else:
        names, matrix = classes, raw
    rows = [
        (names[i], [(int(count), i == j) for j, count in enumerate(row)])
        for i, row in enumerate(matrix)
        if i < len(names)
    ]
    return ConfusionMatrix(classes=names, rows=rows)
