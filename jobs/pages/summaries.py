"""Shapes a batch summary (the same one the JSON report holds) for the batch page."""

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from jobs.models import Batch, Recording, Report
from jobs.services.verdicts import RE_RECORD, UNUSABLE
from ml.calibration import UNCERTAIN

REPORT_ORDER = [Report.Format.PDF, Report.Format.HTML, Report.Format.CSV, Report.Format.JSON]
# Statuses after which the report task writes the reports.
REPORTED_STATUSES = (Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS)


@dataclass(frozen=True)
class ConfusionMatrix:
    classes: list[str]
    rows: list[tuple[str, list[tuple[int, bool]]]]  # (true class, [(count, on the diagonal)])


@dataclass(frozen=True)
class SummaryView:
    class_counts: list[tuple[str, int, float]]  # (label, count, share of predictions)
    decision_counts: list[tuple[str, int]]  # empty for reports written before decisions
    uncertain: int
    re_record: int  # unusable recordings, given no class
    quality_counts: list[tuple[str, int]]
    metrics: list[tuple[str, float | None]]
    labelled: int
    confusion: ConfusionMatrix | None


RUNNING_GROUPS = ("predicted_label", "decision", "quality")
METRIC_NAMES = (
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("macc", "MAcc"),
    ("accuracy", "Accuracy"),
)


def current_reports(batch: Batch) -> list[Report]:
    """The batch's reports for its own model version, PDF and HTML first."""
    reports = batch.reports.filter(model_version=batch.model_version_id)
    return sorted(reports, key=lambda report: REPORT_ORDER.index(Report.Format(report.format)))


def running_counts(rows: QuerySet[Recording]) -> dict[str, dict[str, int]]:
    """Counts by class, decision and quality of the predictions made so far (rows of
    results.batch_recordings), counted as the report's summary counts them: an unusable
    recording has no class and the decision re-record."""
    by_class: Counter[str] = Counter()
    by_decision: Counter[str] = Counter()
    by_quality: Counter[str] = Counter()
    # Annotations' names, which the type checker cannot see as fields.
    groups = (
        rows.filter(**{"predicted_label__isnull": False})
        .order_by()
        .values(*RUNNING_GROUPS)
        .annotate(count=Count("pk"))
    )
    for group in groups:
        count, quality = int(group["count"]), group["quality"]
        by_quality[quality or "unknown"] += count
        if quality == UNUSABLE:
            by_decision[RE_RECORD] += count
            continue
        by_class[group["predicted_label"]] += count
        if group["decision"]:
            by_decision[group["decision"]] += count
    return {"by_class": dict(by_class), "by_decision": dict(by_decision), "by_quality": dict(by_quality)}


def summary_view(summary: dict[str, Any], *, classes: list[str]) -> SummaryView:
    """The summary the report task stored (see jobs.services.reports.summarise)."""
    counts = dict(summary.get("counts") or {})
    by_class = {str(name): int(count) for name, count in (counts.get("by_class") or {}).items()}
    ordered = [name for name in classes if name in by_class] + sorted(set(by_class) - set(classes))
    predicted = sum(by_class.values()) or 1
    metrics = dict(summary.get("metrics") or {})
    by_decision = {str(name): int(count) for name, count in (counts.get("by_decision") or {}).items()}
    return SummaryView(
        class_counts=[(name, by_class[name], by_class[name] / predicted) for name in ordered],
        decision_counts=[(name, by_decision[name]) for name in ordered if name in by_decision]
        + sorted((name, count) for name, count in by_decision.items() if name not in by_class),
        uncertain=by_decision.get(UNCERTAIN, 0),
        re_record=by_decision.get(RE_RECORD, 0),
        quality_counts=sorted((str(k), int(v)) for k, v in (counts.get("by_quality") or {}).items()),
        metrics=[(label, metrics.get(key)) for key, label in METRIC_NAMES if key in metrics],
        labelled=int(metrics.get("labelled") or 0),
        confusion=_confusion(metrics.get("confusion_matrix")),
    )


def _confusion(raw: dict[str, Any] | None) -> ConfusionMatrix | None:
    if not raw:
        return None
    names = [str(name) for name in raw.get("classes") or []]
    matrix = raw.get("rows_truth_columns_predicted") or []
    rows = [
        (names[i], [(int(count), i == j) for j, count in enumerate(row)])
        for i, row in enumerate(matrix)
        if i < len(names)
    ]
    return ConfusionMatrix(classes=names, rows=rows)
