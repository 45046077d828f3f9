"""The batch report as a page of the site: a link that stays, for members of the batch's organisation.

The downloads are short-lived links to the stored files; this page is not: it
shows the figures the stored report was written with (its summary), the
recordings to review first, the patients' verdicts and every file, a page at a time, for whoever
may see the batch (jobs.services.access).
"""

from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from jobs.models import Batch
from jobs.pages import summaries
from jobs.pages.auth import signed_in
from jobs.services import access, patients, reports, verdicts

FILES_PER_PAGE = 100
FIRST_PER_PAGE = 50
PATIENTS_PER_PAGE = 50


@login_required
def batch_report_page(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = access.get_batch(signed_in(request), batch_id)
    stored = summaries.current_reports(batch)
    summary = next((report.summary for report in stored if report.summary), None)
    context: dict[str, object] = {
        "batch": batch,
        "downloads": [
            (f"{report.get_format_display()} report", reverse("batch-report", args=[batch.pk, report.format]))
            for report in stored
        ],
        "no_report": _no_report(batch),
    }
    if summary is not None:
        context |= _report(request, batch, summary)
    return render(request, "jobs/reports/report_page.html", context)


def _report(request: HttpRequest, batch: Batch, summary: dict[str, Any]) -> dict[str, Any]:
    """The stored report's figures, and this page of each of its lists."""
    figures = reports.page_context(batch, summary)
    files = Paginator(reports.report_rows(batch), FILES_PER_PAGE).get_page(request.GET.get("page"))
    first = Paginator(reports.review_first_rows(batch), FIRST_PER_PAGE).get_page(request.GET.get("first"))
    shown = figures | {
        "page": files,
        "rows": _cells(files),
        "review_first_count": first.paginator.count,
        "first_rows": _cells(first),
        "first_pages": _page_links(request, first, "first"),
    }
    if figures["patients"]["count"]:
        people = Paginator(patients.patient_verdicts(batch), PATIENTS_PER_PAGE).get_page(
            request.GET.get("patients")
        )
        shown |= {
            "patient_rows": [reports.patient_cells(patient) for patient in people.object_list],
            "patient_pages": _page_links(request, people, "patients"),
        }
    return shown


def _cells(page: Page[Any]) -> list[dict[str, Any]]:
    return [reports.row_cells(row, verdicts.for_row(row)) for row in page.object_list]


def _page_links(request: HttpRequest, page: Page[Any], name: str) -> dict[str, object]:
    """Links to the pages before and after ``page``, whose number the query's ``name`` holds,
    keeping the rest of the query (the other list's page)."""

    def link(number: int) -> str:
        query = request.GET.copy()
        query[name] = str(number)
        return f"?{query.urlencode()}"

    return {
        "other": page.has_other_pages(),
        "previous": link(page.previous_page_number()) if page.has_previous() else "",
        "next": link(page.next_page_number()) if page.has_next() else "",
        "shown": f"{page.start_index()}–{page.end_index()} of {page.paginator.count}",
    }


def _no_report(batch: Batch) -> str:
    """Why there is no report to show yet, or none to come."""
    if batch.report_error:
        return f"The report could not be written: {batch.report_error} It is tried again automatically."
    if batch.status in Batch.REPORTED:
        return "The report is being written; it appears here once it is ready."
    if batch.is_finished:
        return f"This batch ended {batch.get_status_display().lower()}, so it has no report."
    return "The report is written when the batch finishes."
