"""Drift: how a version's readings move week by week against its baseline.

Each week (by upload date of the recordings) gets the share of each predicted
class, the mean confidence and the share of each quality verdict. The class
baseline is the predicted-class share on the version's validation set (columns
of the confusion matrix in its manifest metrics). Confidence and quality use
the validation figures when the manifest has them (`mean_confidence`,
`quality`), else the version's own history over all weeks. A week with enough
recordings is flagged when it moves beyond a threshold from the baseline.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, QuerySet
from django.db.models.functions import TruncWeek

from jobs.models import ModelVersion, Prediction, Recording

CLASS_THRESHOLD = 0.15  # total variation distance between class shares
CONFIDENCE_THRESHOLD = 0.10  # absolute change of the mean confidence
QUALITY_THRESHOLD = 0.15  # total variation distance between quality shares
MIN_WEEK_COUNT = 20  # fewer recordings than this are noise, never flagged


@dataclass
class Baseline:
    classes: dict[str, float] | None
    mean_confidence: float | None
    quality: dict[str, float] | None
    sources: dict[str, str]


@dataclass
class Week:
    week: str
    count: int
    classes: dict[str, float]
    mean_confidence: float
    quality: dict[str, float]
    class_distance: float | None = None
    confidence_shift: float | None = None
    quality_distance: float | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class Drift:
    version: str
    threshold: float
    baseline: Baseline
    weeks: list[Week]

    @property
    def flagged(self) -> list[str]:
        return [week.week for week in self.weeks if week.flags]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "threshold": self.threshold,
            "baseline": vars(self.baseline),
            "weeks": [vars(week) for week in self.weeks],
            "flagged_weeks": self.flagged,
        }


def version_drift(
    version: ModelVersion, recordings: QuerySet[Recording], *, threshold: float = CLASS_THRESHOLD
) -> Drift:
    """Weekly distributions of `version`'s predictions on `recordings`, flagged against its baseline."""
    predictions = Prediction.objects.filter(model_version=version, recording__in=recordings.values("pk"))
    weeks = _weeks(predictions)
    baseline = _baseline(version, weeks)
    for week in weeks:
        _flag(week, baseline, threshold)
    return Drift(version=version.slug, threshold=threshold, baseline=baseline, weeks=weeks)


def _weeks(predictions: QuerySet[Prediction]) -> list[Week]:
    totals = (
        predictions.annotate(week=TruncWeek("recording__created_at"))
        .values("week")
        .annotate(count=Count("id"), confidence=Avg("confidence"))
        .order_by("week")
    )
    labels = _shares(predictions, "label")
    qualities = _shares(predictions, "quality")
    return [
        Week(
            week=row["week"].date().isoformat(),
            count=row["count"],
            classes=labels.get(row["week"], {}),
            mean_confidence=round(row["confidence"], 4),
            quality=qualities.get(row["week"], {}),
        )
        for row in totals
    ]


def _shares(predictions: QuerySet[Prediction], field_name: str) -> dict[Any, dict[str, float]]:
    counts: dict[Any, dict[str, int]] = {}
    weekly = predictions.annotate(week=TruncWeek("recording__created_at"))
    for row in weekly.values("week", field_name).annotate(count=Count("id")).order_by():
        counts.setdefault(row["week"], {})[row[field_name] or "unknown"] = row["count"]
    return {week: _normalise(values) for week, values in counts.items()}


def _normalise(counts: dict[str, int] | dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: round(value / total, 4) for key, value in sorted(counts.items())} if total else {}


def _baseline(version: ModelVersion, weeks: list[Week]) -> Baseline:
    validation = (version.metrics or {}).get("validation") or {}
    classes = _validation_classes(validation, list(version.classes))
    confidence = validation.get("mean_confidence")
    quality = validation.get("quality")
    sources = {"classes": "validation" if classes else "none"}
    if confidence is None and weeks:
        total = sum(week.count for week in weeks)
        confidence = round(sum(week.mean_confidence * week.count for week in weeks) / total, 4)
        sources["confidence"] = "history"
    else:
        sources["confidence"] = "validation" if confidence is not None else "none"
    if not quality and weeks:
        pooled: dict[str, float] = {}
        for week in weeks:
            for verdict, share in week.quality.items():
                pooled[verdict] = pooled.get(verdict, 0.0) + share * week.count
        quality = _normalise(pooled)
        sources["quality"] = "history"
    else:
        sources["quality"] = "validation" if quality else "none"
    return Baseline(classes=classes, mean_confidence=confidence, quality=quality or None, sources=sources)


def _validation_classes(validation: dict[str, Any], classes: list[str]) -> dict[str, float] | None:
    """Predicted-class shares: the column sums of the validation confusion matrix."""
    matrix = validation.get("confusion_matrix")
    order = validation.get("classes") or classes
    if not matrix or len(matrix) != len(order):
        return None
    columns = {label: float(sum(row[index] for row in matrix)) for index, label in enumerate(order)}
    return _normalise(columns)


def distance(shares: dict[str, float], baseline: dict[str, float]) -> float:
    """Total variation distance: half the sum of absolute differences, 0 (same) to 1."""
    keys = set(shares) | set(baseline)
    return round(sum(abs(shares.get(key, 0.0) - baseline.get(key, 0.0)) for key in keys) / 2, 4)


def _flag(week: Week, baseline: Baseline, threshold: float) -> None:
    if baseline.classes:
        week.class_distance = distance(week.classes, baseline.classes)
    if baseline.mean_confidence is not None:
        week.confidence_shift = round(week.mean_confidence - baseline.mean_confidence, 4)
    if baseline.quality:
        week.quality_distance = distance(week.quality, baseline.quality)
    if week.count < MIN_WEEK_COUNT:
        return
    if week.class_distance is not None and week.class_distance > threshold:
        week.flags.append("classes")
    if week.confidence_shift is not None and abs(week.confidence_shift) > CONFIDENCE_THRESHOLD:
        week.flags.append("confidence")
    if week.quality_distance is not None and week.quality_distance > QUALITY_THRESHOLD:
        week.flags.append("quality")
