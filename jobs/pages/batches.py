"""Batch pages: list, upload, detail with live progress, cancel and delete."""

from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.cache import never_cache

from jobs.forms import RECORDING_SORTS, BatchFilterForm, RecordingFilterForm, UploadForm
from jobs.models import Batch, Organisation
from jobs.pages import summaries
from jobs.pages.auth import signed_in
from jobs.pages.organisations import current_organisation
from jobs.services import (
    access,
    downloads,
    lifecycle,
    patients,
    results,
    reviews,
    sites,
    uploads,
    verdicts,
    webhooks,
)
from jobs.services.lifecycle import BatchFinished
from jobs.services.progress import Progress
from jobs.services.progress import batch_progress as progress_of
from jobs.services.reports import CONTENT_TYPES
from jobs.templatetags.lubdub import seconds

BATCHES_PER_PAGE = 25
RECORDINGS_PER_PAGE = 50
CARD_SORTS = (
    ("path", "file"),
    ("decision", "decision"),
    ("confidence", "confidence"),
    ("quality", "quality"),
)


@login_required
def batch_list(request: HttpRequest) -> HttpResponse:
    organisation = current_organisation(request)
    form = BatchFilterForm(request.GET or None)
    batches = access.visible_batches(signed_in(request)).filter(organisation=organisation)
    batches = form.filter(batches).select_related("model_version", "created_by")
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/batch_list.html",
        {"organisation": organisation, "form": form, "page": page, "batches": page.object_list},
    )


def _sort_links(request: HttpRequest) -> dict[str, dict[str, str]]:
    """For each sortable column: the query to sort by it and its aria-sort state."""
    current = request.GET.get("sort", "path")
    links = {}
    for key in RECORDING_SORTS:
        query = request.GET.copy()
        query.pop("page", None)
        query["sort"] = f"-{key}" if current == key else key
        state = "ascending" if current == key else "descending" if current == f"-{key}" else "none"
        links[key] = {"query": query.urlencode(), "state": state}
    return links


@login_required
def batch_detail(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    user = signed_in(request)
    batch = access.get_batch(user, batch_id)
    classes = list(batch.model_version.classes)
    positive = verdicts.model_rule(batch.model_version).positive
    form = RecordingFilterForm(request.GET or None, classes=classes, positive=positive)
    rows = results.batch_recordings(batch)
    recordings = form.filter(rows)
    page = Paginator(recordings, RECORDINGS_PER_PAGE).get_page(request.GET.get("page"))
    reports = summaries.current_reports(batch)
    summary = next((report.summary for report in reports if report.summary), None)
    progress = progress_of(batch)
    # Until the report's summary is written, the counts of the predictions made so far.
    running = summary is None and progress.processed > 0
    if running:
        summary = {"counts": summaries.running_counts(rows)}
    site_profile = sites.active_calibration(batch.site, batch.model_version)
    sort_links = _sort_links(request)
    context = {
        "batch": batch,
        "site_profile": site_profile,
        "site_rules": sites.rules_used(batch),
        # Scores unlike validation and no site rule to fall back on: say how to get one.
        "uncalibrated_shift": bool(batch.shift_warning) and site_profile is None,
        "progress": progress,
        "live": progress_payload(progress, reports_ready=bool(reports)),
        "summary": summaries.summary_view(summary, classes=classes) if summary else None,
        "running_summary": running,
        "has_recordings": rows.exists(),
        "patient_count": patients.patient_count(batch),
        "reports": [
            (report.get_format_display(), reverse("batch-report", args=[batch.pk, report.format]))
            for report in reports
        ],
        "awaiting_reports": progress.finished
        and batch.status in summaries.REPORTED_STATUSES
        and not reports
        and not batch.report_error,
        "report_failed": bool(batch.report_error) and not reports,
        "webhook_line": webhooks.status_line(batch) if webhooks.can_manage(user, batch.organisation) else "",
        "form": form,
        "page": page,
        "recordings": page.object_list,
        "sort_links": sort_links,
        # On a phone the table is a list of cards without its header: these links sort it.
        "card_sorts": [(title, sort_links[key]) for key, title in CARD_SORTS],
        "filtered": form.is_bound and form.has_changed(),
        # Carried to each recording page, for its previous and next links in this order and filter.
        "nav_query": urlencode({"batch": batch.pk, **form.query()}),
        "review_counts": {
            **reviews.review_counts(rows),
            "needs_review": reviews.filter_reviews(
                rows, "needs_review", classes=classes, positive=positive
            ).count(),
        },
    }
    return render(request, "jobs/batch_detail.html", context)


@never_cache
@login_required
def batch_progress(request: HttpRequest, batch_id: UUID) -> JsonResponse:
    batch = access.get_batch(signed_in(request), batch_id)
    reports_ready = bool(summaries.current_reports(batch))
    return JsonResponse(progress_payload(progress_of(batch), reports_ready=reports_ready))


def progress_payload(progress: Progress, *, reports_ready: bool = False) -> dict[str, object]:
    """The progress card's figures; ``version`` changes whenever the page's rows or results may have."""
    if progress.unpacking and progress.expected_total is not None:
        expected = progress.expected_total
        counts = f"{progress.total} of {expected} file{'s' if expected != 1 else ''} unpacked · "
        counts += f"{progress.processed} analysed"
    elif progress.unpacking:
        counts = f"{progress.total} file{'s' if progress.total != 1 else ''} unpacked so far · "
        counts += f"{progress.processed} analysed"
    else:
        counts = f"{progress.processed} of {progress.total - progress.rejected} analysed"
    counts += f" · {progress.done} done"
    if progress.failed:
        counts += f" · {progress.failed} failed"
    if progress.rejected:
        counts += f" · {progress.rejected} rejected at upload"
    return {
        "status": progress.status,
        "status_display": progress.status_display,
        "percent": progress.percent,
        "total": progress.total,
        "expected_total": progress.expected_total,
        "done": progress.done,
        "failed": progress.failed,
        "rejected": progress.rejected,
        "pending": progress.pending,
        "eta_seconds": progress.eta_seconds,
        "eta_text": eta_text(progress),
        "counts_text": counts,
        "finished": progress.finished,
        "requeued": progress.requeued,
        "requeued_text": requeued_text(progress),
        "report_error": progress.report_error,
        "unpacking": progress.unpacking,
        "indeterminate": progress.indeterminate,
        "reports_ready": reports_ready,
        "version": ":".join(
            str(part) for part in (progress.status, progress.total, progress.processed, reports_ready)
        ),
    }


def requeued_text(progress: Progress) -> str:
    """What the page says once the sweeper re-queued a stopped worker's recordings ("" if never)."""
    if not progress.requeued:
        return ""
    recordings = f"{progress.requeued} recording{'s' if progress.requeued != 1 else ''}"
    if progress.finished:
        return f"A worker stopped during this batch; {recordings} were re-queued."
    return f"A worker stopped; {recordings} re-queued."


def eta_text(progress: Progress) -> str:
    if progress.finished:
        return "Finished"
    if progress.eta_seconds is None:
        return "Estimating time left…"
    return f"About {seconds(progress.eta_seconds)} left"


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("x-requested-with") == "XMLHttpRequest"


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    organisation = current_organisation(request)
    if organisation is None:
        raise PermissionDenied("not a member of any organisation")
    if request.method != "POST":
        return _upload_page(request, UploadForm(user=user, organisation=organisation), organisation)
    try:
        # Checked before the body is read: a too-large upload never reaches the disk.
        uploads.check_declared_size(
            request.META.get("CONTENT_LENGTH"),
            transfer_encoding=request.META.get("HTTP_TRANSFER_ENCODING", ""),
        )
    except uploads.UploadRejected as exc:
        return _upload_refused(
            request,
            UploadForm(user=user, organisation=organisation),
            organisation,
            status=exc.status,
            error=exc.message,
        )
    form = UploadForm(request.POST, request.FILES, user=user, organisation=organisation)
    status = 400
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            batch = uploads.create_batch_from_upload(
                user=user,
                organisation=organisation,
                upload=upload,
                filename=upload.name or "upload",
                options=uploads.UploadOptions(
                    name=form.cleaned_data["name"],
                    model=form.cleaned_data["model"],
                    site=form.cleaned_data["site"],
                    webhook_url=form.cleaned_data["webhook_url"],
                ),
            )
        except uploads.UploadRejected as exc:
            form.add_error("file", exc.message)
            status = exc.status
        else:
            url = reverse("batch-detail", args=[batch.pk])
            if _wants_json(request):
                return JsonResponse({"batch_id": str(batch.pk), "batch_url": url}, status=201)
            return redirect(url)
    return _upload_refused(request, form, organisation, status=status)


def _upload_page(
    request: HttpRequest, form: UploadForm, organisation: Organisation, *, status: int = 200, error: str = ""
) -> HttpResponse:
    context = {
        "form": form,
        "organisation": organisation,
        "max_bytes": settings.LUBDUB_MAX_UPLOAD_BYTES,
        "error": error,
    }
    return render(request, "jobs/upload.html", context, status=status)


def _upload_refused(
    request: HttpRequest, form: UploadForm, organisation: Organisation, *, status: int, error: str = ""
) -> HttpResponse:
    if _wants_json(request):
        error = error or " ".join(str(message) for errors in form.errors.values() for message in errors)
        return JsonResponse({"error": error}, status=status)
    return _upload_page(request, form, organisation, status=status, error=error)


def _confirmation(request: HttpRequest, batch_id: UUID, *, action: str) -> tuple[Batch, HttpResponse | None]:
    """The batch, and the confirmation page to show unless the form was posted."""
    batch = access.get_batch(signed_in(request), batch_id)
    if request.method != "POST":
        return batch, render(request, f"jobs/batch_{action}.html", {"batch": batch})
    return batch, None


@login_required
def batch_cancel(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch, confirmation = _confirmation(request, batch_id, action="cancel")
    if confirmation is not None:
        return confirmation
    try:
        lifecycle.cancel_batch(batch, user=signed_in(request))
    except BatchFinished as exc:
        messages.info(request, str(exc))
    else:
        messages.success(request, "The batch was cancelled. Recordings already analysed keep their results.")
    return redirect("batch-detail", batch_id)


@login_required
def batch_delete(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch, confirmation = _confirmation(request, batch_id, action="delete")
    if confirmation is not None:
        return confirmation
    name = str(batch)
    lifecycle.delete_batch(batch, user=signed_in(request))
    messages.success(request, f"The batch “{name}” and its files were deleted.")
    return redirect("batch-list")


@login_required
def batch_report(request: HttpRequest, batch_id: UUID, fmt: str) -> HttpResponse:
    """A short-lived link to one of the batch's reports."""
    batch = access.get_batch(signed_in(request), batch_id)
    report = next((report for report in summaries.current_reports(batch) if report.format == fmt), None)
    if report is None:
        raise Http404("No such report")
    filename = f"{slugify(batch.name) or batch.pk}-{batch.model_version.slug}.{fmt}"
    return redirect(
        downloads.download_link(report.storage_key, filename=filename, content_type=CONTENT_TYPES[fmt])
    )
