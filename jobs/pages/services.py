"""The business services the pages call: the same functions the API calls.

Pages import them from here so a page never grows its own copy of the logic.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from jobs.models import Analysis, Batch, Prediction, Recording, Report


def visible_batches(user: Any) -> QuerySet[Batch]:
    if getattr(user, "is_staff", False):
        return Batch.objects.all()
    return Batch.objects.filter(organisation__membership__user=user)


def get_batch(user: Any, batch_id: UUID) -> Batch:
    batch = visible_batches(user).select_related("model_version", "organisation", "created_by")
    try:
        return batch.get(pk=batch_id)
    except Batch.DoesNotExist as exc:
        raise Http404("No such batch") from exc


def visible_recordings(user: Any) -> QuerySet[Recording]:
    if getattr(user, "is_staff", False):
        return Recording.objects.all()
    return Recording.objects.filter(organisation__membership__user=user)


def get_recording(user: Any, recording_id: int) -> Recording:
    try:
        return visible_recordings(user).select_related("batch", "batch__model_version").get(pk=recording_id)
    except Recording.DoesNotExist as exc:
        raise Http404("No such recording") from exc


@dataclass(frozen=True)
class Progress:
    status: str
    status_display: str
    total: int
    done: int
    failed: int
    rejected: int
    skipped: int
    pending: int
    percent: int
    eta_seconds: float | None
    finished: bool

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped


def batch_progress(batch: Batch) -> Progress:
    total = batch.total_count
    processed = batch.done_count + batch.failed_count + batch.skipped_count
    percent = 100 if batch.is_finished else (int(processed * 100 / total) if total else 0)
    eta = None
    if batch.started_at and processed and not batch.is_finished:
        elapsed = (timezone.now() - batch.started_at).total_seconds()
        eta = elapsed / processed * max(total - processed, 0)
    return Progress(
        status=batch.status,
        status_display=batch.get_status_display(),
        total=total,
        done=batch.done_count,
        failed=batch.failed_count,
        rejected=batch.rejected_count,
        skipped=batch.skipped_count,
        pending=batch.pending_count,
        percent=min(percent, 100),
        eta_seconds=eta,
        finished=batch.is_finished,
    )


def batch_recordings(batch: Batch) -> QuerySet[Recording]:
    predictions = Prediction.objects.filter(recording=OuterRef("pk"), model_version=batch.model_version_id)
    analyses = Analysis.objects.filter(recording=OuterRef("pk"), batch=batch)
    return (
        Recording.objects.filter(Q(batch=batch) | Q(analyses__batch=batch))
        .distinct()
        .annotate(
            analysis_status=Subquery(analyses.values("status")[:1]),
            analysis_error=Subquery(analyses.values("error_message")[:1]),
            predicted_label=Subquery(predictions.values("label")[:1]),
            confidence=Subquery(predictions.values("confidence")[:1]),
            quality=Subquery(predictions.values("quality")[:1]),
            heart_rate_bpm=Subquery(predictions.values("heart_rate_bpm")[:1]),
        )
    )


def batch_summary(batch: Batch) -> dict[str, Any]:
    report = batch.reports.filter(format=Report.Format.JSON).first()
    if report and report.summary:
        return dict(report.summary)
    predictions = Prediction.objects.filter(batch=batch, model_version=batch.model_version_id)
    return {"class_counts": dict(predictions.values_list("label").annotate(n=Count("id")))}


def report_links(batch: Batch) -> list[tuple[str, str]]:
    from django.urls import reverse

    formats = batch.reports.filter(model_version=batch.model_version_id).values_list("format", flat=True)
    return [
        (fmt.upper(), reverse("batch-report", args=[batch.pk, fmt]))
        for fmt in sorted(formats, key=["html", "csv", "json"].index)
    ]


class UploadRejected(ValueError):
    """Provisional stand-in for the batch service's upload error."""


def create_batch_from_upload(**kwargs: Any) -> Batch:
    raise NotImplementedError


def cancel_batch(batch: Batch, *, user: Any) -> None:
    raise NotImplementedError


def delete_batch(batch: Batch, *, user: Any) -> None:
    raise NotImplementedError


def report_response(batch: Batch, fmt: str) -> Any:
    raise NotImplementedError
