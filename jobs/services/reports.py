"""Batch reports: a CSV row per file, a JSON summary, and an HTML page and a PDF for clinicians.

Rows are streamed from Postgres into a temporary file and then to storage, so a
report of fifty thousand files needs no more memory than one of ten (bar one
float per file for the batch-shift check). Writing the reports is also where a
finished batch gets its batch-shift warning: every prediction is written by then.
Clinicians' reviews appear beside the model's results (the latest per recording)
and are counted, but change none of the model's figures; a review writes the
reports again.
"""

import csv
import io
import json
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError
from django.db.models import QuerySet
from django.template.loader import get_template, render_to_string
from django.utils import timezone

from jobs import storage
from jobs.models import Batch, ModelVersion, Prediction, Recording, Report
from jobs.services import patients, report_pdf, reviews, verdicts, wording
from jobs.services.results import batch_recordings, review_first
from jobs.services.verdicts import Verdict
from ml import calibration, scoring
from ml.spreadsheet import text_cell

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 10
# A row without a prediction: every cell of the verdict is empty.
NO_VERDICT = Verdict(
    decision="", label=None, confidence=None, reasons=[], probability=None, threshold=None, positive=None
)
SPOOL_BYTES = 8 * 1024 * 1024
CONTENT_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
ROW_FIELDS = (
    "path", "file_status", "predicted_label", "decision", "decision_reasons", "confidence",
    "probabilities", "quality", "heart_rate_bpm", "duration_s", "error", "error_code_value", "label",
    "site_probability", "site_calibration_id", "site_calibration_version", "site_name",
    "quality_reasons", "s1_onsets", "site_threshold", "positive_class", "model_threshold", "review",
    "patient_id", "location",
)  # fmt: skip
REVIEW_COLUMNS = ["reviewed_label", "review_action", "reviewed_by", "reviewed_at", "review_note"]


def csv_columns(classes: list[str]) -> list[str]:
    probability_columns = [f"p_{name}" for name in classes]
    return [
        "path", "status", "label", "decision", "confidence", *probability_columns,
        "quality", "heart_rate_bpm", "duration_s", "model_version", "error",
        "site", "site_calibration", "site_probability",
        "threshold", "decision_reasons", "heart_rate_flag", *REVIEW_COLUMNS,
        "patient_id", "location",
    ]  # fmt: skip


@dataclass
class Tally:
    """Everything the summary needs, gathered in one pass over the rows."""

    classes: list[str]
    positive: str | None
    statuses: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    qualities: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    confusion: dict[str, Counter[str]] = field(default_factory=dict)
    audio_seconds: float = 0.0
    # Calibrated probability of the positive class per prediction, for the batch-shift check.
    positive_scores: list[float] = field(default_factory=list)
    # Predictions decided by each site calibration: (calibration id, site, version) -> count.
    site_rules: Counter[tuple[int, str, int]] = field(default_factory=Counter)
    # Clinicians' latest reviews: how many recordings, and how many gave another class than the model.
    reviewed: int = 0
    overridden: int = 0

    def add(self, row: dict[str, Any], verdict: Verdict | None) -> None:
        self.statuses[row["file_status"] or "pending"] += 1
        review = reviews.row_review(row)
        if review is not None:
            self.reviewed += 1
            self.overridden += int(review.overridden)
        if row["error_code_value"]:
            self.errors[row["error_code_value"]] += 1
        if verdict is None:
            return
        if verdict.decision:
            self.decisions[verdict.decision] += 1
        if row["site_calibration_id"] is not None:
            self.site_rules[
                (row["site_calibration_id"], row["site_name"], row["site_calibration_version"])
            ] += 1
        score = (row["probabilities"] or {}).get(self.positive) if self.positive else None
        if score is not None:
            self.positive_scores.append(float(score))
        self.qualities[row["quality"] or "unknown"] += 1
        self.audio_seconds += row["duration_s"] or 0.0
        predicted = verdict.label
        if predicted is None:
            return  # to be re-recorded: no class to count, to grade, or to be sure of
        self.labels[predicted] += 1
        bin_index = min(int((verdict.confidence or 0.0) * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)
        self.histogram[bin_index] += 1
        truth = row["label"]
        if truth in self.classes:
            self.confusion.setdefault(truth, Counter())[predicted] += 1

    def metrics(self) -> dict[str, Any] | None:
        """Sensitivity, specificity and their mean (MAcc) against the ground truth."""
        if not self.confusion:
            return None
        matrix = [[self.confusion.get(t, Counter())[p] for p in self.classes] for t in self.classes]
        result: dict[str, Any] = {
            "labelled": sum(map(sum, matrix)),
            "confusion_matrix": {"classes": self.classes, "rows_truth_columns_predicted": matrix},
            "accuracy": _ratio(sum(matrix[i][i] for i in range(len(self.classes))), sum(map(sum, matrix))),
        }
        if self.positive is not None:
            pos = self.classes.index(self.positive)
            neg = 1 - pos
            rates = scoring.binary_rates(
                tp=matrix[pos][pos], fn=matrix[pos][neg], tn=matrix[neg][neg], fp=matrix[neg][pos]
            )
            result.update(
                positive_class=self.positive, sensitivity=rates.sensitivity, specificity=rates.specificity
            )
            if rates.macc is not None:
                result["macc"] = rates.macc
        return result


def write_reports(batch_id: UUID | str) -> list[Report]:
    """Write the CSV, JSON, HTML and PDF reports of a finished batch; safe to run again.

    A batch deleted while its reports are written gets none: what was stored of
    them is removed, since a deleted batch's results must not stay in storage.
    """
    batch = Batch.objects.select_related("model_version", "organisation", "site").filter(pk=batch_id).first()
    if batch is None:
        return []  # deleted meanwhile
    try:
        reports = _write_all(batch)
    except IntegrityError:
        # Each report row names its batch: the insert fails once the batch is gone.
        if Batch.objects.filter(pk=batch.pk).exists():
            raise
        reports = []
    # A report row stored just before the batch's deletion went with it, but its
    # object may not have been among those the deletion removed.
    if not Batch.objects.filter(pk=batch.pk).exists():
        removed = remove_report_objects(batch)
        logger.info("batch %s was deleted while its reports were written: %d removed", batch.pk, removed)
        return []
    Batch.objects.filter(pk=batch.pk).update(report_error_code="", report_error="", report_retry_at=None)
    return reports


def remove_report_objects(batch: Batch) -> int:
    """Delete the stored reports of ``batch``'s model version, rows or not; how many there were."""
    removed = 0
    for fmt in Report.Format.values:
        key = storage.report_key(batch.pk, batch.model_version.slug, fmt)
        if storage.exists(key):
            storage.delete(key)
            removed += 1
    return removed


def _write_all(batch: Batch) -> list[Report]:
    version = batch.model_version
    classes = list(version.classes)
    tally = Tally(
        classes=classes, positive=scoring.graded_class(classes, version.manifest.get("positive_class"))
    )
    with ExitStack() as spools:
        spool = partial(_open_spool, spools)
        every_file, first = FileRows(spool(), spool()), FileRows(spool(), spool())
        people = FileRows(spool(), spool(), template=PATIENTS_TEMPLATE)
        lists = Lists(
            uncertain=spool(),
            re_record=spool(),
            reviewed=spool(),
            review_first=spool(),
            patients=people.cells,
        )
        csv_file = spool()
        _write_rows(batch, tally, csv_file, every_file, lists)
        review_first_count = _write_review_first(batch, first, lists.review_first)
        verdict_counts = _write_patients(batch, people)
        batch.shift_warning = shift_warning(version, tally.positive_scores)
        Batch.objects.filter(pk=batch.pk).update(shift_warning=batch.shift_warning)
        summary = summarise(batch, tally, patient_verdicts=verdict_counts)
        json_file = spool()
        _write_json(summary, lists, json_file)
        reports = [
            _store(batch, "csv", csv_file, summary),
            _store(batch, "json", json_file, summary),
        ]
        context = page_context(batch, summary) | {"review_first_count": review_first_count}
        page = spool()
        _write_html(
            context,
            {REVIEW_FIRST_MARK: first.html, PATIENTS_MARK: people.html, ROWS_MARK: every_file.html},
            page,
        )
        reports.append(_store(batch, "html", page, summary))
        pdf = spool()
        report_pdf.write_pdf(
            context, review_first=first.cells, patients=people.cells, every_file=every_file.cells, out=pdf
        )
        reports.append(_store(batch, "pdf", pdf, summary))
    return reports


def record_failure(batch_id: UUID | str, exc: BaseException) -> None:
    """Say on the batch why its reports could not be written; the sweeper tries again later.

    Called once the report task has given up (retries spent, or an error that
    retrying at once would not cure), so a batch never sits without reports
    and without a word.
    """
    code, reason = failure_reason(exc)
    retry_at = timezone.now() + timedelta(seconds=settings.LUBDUB_REPORT_RETRY_SECONDS)
    Batch.objects.filter(pk=batch_id).update(
        report_error_code=code, report_error=reason[:2000], report_retry_at=retry_at
    )


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """A code and a sentence for the batch page and the API."""
    if isinstance(exc, storage.BucketMissing):
        return "storage_bucket_missing", str(exc)
    if isinstance(exc, storage.StorageUnavailable):
        return "storage_unavailable", f"Storage did not answer ({exc})."
    return "report_error", f"{type(exc).__name__}: {exc}"


def summarise(batch: Batch, tally: Tally, *, patient_verdicts: Counter[str] | None = None) -> dict[str, Any]:
    """The JSON report's figures, kept in the Report rows (the pages and webhooks read them)."""
    patient_verdicts = patient_verdicts or Counter()
    return {
        "batch": str(batch.pk),
        "name": batch.name,
        "organisation": batch.organisation.name,
        "model_version": batch.model_version.slug,
        "status": batch.status,
        "shift_warning": batch.shift_warning or None,
        "site": {"id": batch.site.pk, "name": batch.site.name} if batch.site else None,
        # `decision` of these predictions is the site's; `label` and probabilities stay the model's.
        "site_calibrations": [
            {"id": pk, "site": name, "version": version, "predictions": count}
            for (pk, name, version), count in sorted(tally.site_rules.items())
        ],
        # The model's own threshold; site calibrations above name theirs on each prediction.
        "threshold": verdicts.model_rule(batch.model_version).threshold,
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "counts": {
            "files": batch.total_count,
            "by_status": dict(tally.statuses),
            "by_class": dict(tally.labels),
            "by_decision": dict(tally.decisions),
            "by_quality": dict(tally.qualities),
            "by_error": dict(tally.errors),
        },
        "confidence_histogram": {"bins": HISTOGRAM_BINS, "counts": tally.histogram},
        "timings": _timings(batch, tally),
        "metrics": tally.metrics(),
        # The model's figures above are the model's; reviews are counted apart.
        "reviews": {"reviewed": tally.reviewed, "overridden": tally.overridden},
        # One verdict per patient the recordings name (jobs.services.patients).
        "patients": {"count": patient_verdicts.total(), "by_verdict": dict(patient_verdicts)},
    }


def shift_warning(version: ModelVersion, positive_scores: list[float]) -> str:
    """The batch-shift warning for these calibrated positive-class probabilities, or ""."""
    positive = verdicts.positive_class(version)
    if positive is None:
        return ""  # not a screening model: there is no positive class to compare
    found = calibration.batch_shift_warning(
        positive_scores,
        calibration=verdicts.version_calibration(dict(version.manifest or {})),
        positive_class=positive,
    )
    return found or ""


@dataclass(frozen=True)
class Lists:
    """Spools for the JSON report's lists, one line per recording: given no class (uncertain,
    to re-record), reviewed by a clinician, to review first (in that order), and one per patient."""

    uncertain: IO[bytes]
    re_record: IO[bytes]
    reviewed: IO[bytes]
    review_first: IO[bytes]
    patients: IO[bytes]


def _write_rows(
    batch: Batch, tally: Tally, csv_file: IO[bytes], every_file: "FileRows", lists: Lists
) -> None:
    text = io.TextIOWrapper(csv_file, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(csv_columns(tally.classes))
    for row in _rows(batch):
        verdict = verdicts.for_row(row)
        tally.add(row, verdict)
        writer.writerow(_csv_row(row, verdict, tally.classes, batch))
        every_file.add(row_cells(row, verdict))
        if verdict is not None and verdict.decision in (calibration.UNCERTAIN, verdicts.RE_RECORD):
            entry = {**_listed(row), "reasons": verdict.reasons}
            spool = lists.re_record if verdict.re_record else lists.uncertain
            spool.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
        review = reviews.row_review(row)
        if review is not None:
            entry = {**_listed(row), **_review_entry(review)}
            lists.reviewed.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
    every_file.flush()
    text.detach()


def review_first_rows(batch: Batch) -> QuerySet[Recording, dict[str, Any]]:
    """results.review_first's rows, as report_rows gives them, with their risk."""
    # The Django plugin types values() only for field names it can read; these come from a tuple.
    rows: QuerySet[Recording, dict[str, Any]] = review_first(batch).values(*ROW_FIELDS, "risk")
    return rows


def _write_review_first(batch: Batch, first: "FileRows", spool: IO[bytes]) -> int:
    """The recordings to review first, highest risk first, into the pages' rows and the JSON's list."""
    count = 0
    for row in review_first_rows(batch).iterator(chunk_size=2000):
        verdict = verdicts.for_row(row)
        first.add(row_cells(row, verdict))
        shown = verdict or NO_VERDICT
        entry = {**_listed(row), "decision": shown.outcome, "risk": row["risk"], "reasons": shown.reasons}
        spool.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
        count += 1
    first.flush()
    return count


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    """How the JSON report's lists name a recording: its path, patient and location ("" when none)."""
    return {"path": row["path"], "patient_id": row["patient_id"], "location": row["location"]}


def _write_patients(batch: Batch, people: "FileRows") -> Counter[str]:
    """One row per patient, with their verdict and recordings; how many patients have each verdict."""
    counts: Counter[str] = Counter()
    for patient in patients.patient_verdicts(batch):
        people.add(patient_cells(patient))
        counts[patient.verdict] += 1
    people.flush()
    return counts


def patient_cells(patient: patients.PatientVerdict) -> dict[str, Any]:
    """One patient for patient_rows.html, the PDF and the JSON report's patients."""
    return {
        "patient_id": patient.patient_id,
        "verdict": patient.verdict,
        "reason": patient.reason,
        "recordings": [
            {
                "path": reading.path,
                "location": reading.location,
                "outcome": reading.outcome,
                "reviewed": reading.reviewed,
            }
            for reading in patient.readings
        ],
    }


def _review_entry(review: reviews.LatestReview) -> dict[str, str]:
    return {
        "reviewed_label": review.label,
        "review_action": review.action,
        "model_decision": review.model_decision,
        "reviewed_by": review.reviewed_by,
        "reviewed_at": review.reviewed_at.isoformat() if review.reviewed_at else "",
        "review_note": review.note,
    }


def _write_json(summary: dict[str, Any], lists: Lists, out: IO[bytes]) -> None:
    """The summary with every uncertain recording and every one to re-record, with their
    reasons, every reviewed one with its latest review, and those to review first with
    their risk, highest first, streamed from the spools.

    Only the summary is kept in the Report rows; the lists can be as long as the batch.
    """
    out.write(json.dumps(summary, indent=2, sort_keys=True).removesuffix("\n}").encode())
    for name, spool in (
        ("re_record_recordings", lists.re_record),
        ("uncertain_recordings", lists.uncertain),
        ("reviewed_recordings", lists.reviewed),
        ("review_first_recordings", lists.review_first),
        ("patient_verdicts", lists.patients),
    ):
        out.write(f',\n  "{name}": ['.encode())
        spool.seek(0)
        for index, line in enumerate(spool):
            out.write((b"," if index else b"") + b"\n    " + line.rstrip(b"\n"))
        out.write(b"\n  ]")
    out.write(b"\n}\n")


def report_rows(batch: Batch) -> QuerySet[Recording, dict[str, Any]]:
    """The rows every report is written from (and the report page shows), in the files' order."""
    # The Django plugin types values() only for field names it can read; these come from a tuple.
    rows: QuerySet[Recording, dict[str, Any]] = batch_recordings(batch).values(*ROW_FIELDS)
    return rows


def _rows(batch: Batch) -> Iterator[dict[str, Any]]:
    yield from report_rows(batch).iterator(chunk_size=2000)


def _csv_row(row: dict[str, Any], verdict: Verdict | None, classes: list[str], batch: Batch) -> list[str]:
    """One file's cells; text passes through text_cell (file names and reasons come from uploaders)."""
    probabilities = row["probabilities"] or {}
    site = row["site_name"] or (batch.site.name if batch.site else "")
    shown = verdict or NO_VERDICT
    review = reviews.row_review(row)
    reviewed = _review_entry(review) if review else dict.fromkeys(REVIEW_COLUMNS, "")
    return [
        text_cell(row["path"]),
        text_cell(row["file_status"] or "pending"),
        text_cell(shown.label or ""),
        text_cell(shown.decision),
        _number(shown.confidence),
        # The model's probabilities stay, also for recordings to re-record.
        *[_number(probabilities.get(name)) for name in classes],
        text_cell(row["quality"] or ""),
        _number(shown.heart_rate.bpm, digits=1),
        _number(row["duration_s"], digits=2),
        text_cell(batch.model_version.slug) if verdict else "",
        text_cell(row["error"] or ""),
        text_cell(site),
        f"v{row['site_calibration_version']}" if row["site_calibration_version"] else "",
        _number(row["site_probability"]),
        _number(shown.threshold),
        text_cell("; ".join(shown.reasons)),
        text_cell(shown.heart_rate.flag),
        # The note is free text from a person: neutralised like every other text cell.
        *[text_cell(reviewed[column]) for column in REVIEW_COLUMNS],
        text_cell(row["patient_id"]),
        text_cell(row["location"]),
    ]


def _number(value: float | None, *, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _timings(batch: Batch, tally: Tally) -> dict[str, Any]:
    stages: dict[str, list[float]] = {}
    predictions = Prediction.objects.filter(batch=batch, model_version=batch.model_version_id)
    for timings in predictions.values_list("timings", flat=True).iterator(chunk_size=2000):
        for stage, value in (timings or {}).items():
            stages.setdefault(stage, []).append(float(value))
    wall = (batch.finished_at - batch.created_at).total_seconds() if batch.finished_at else None
    analysed = tally.statuses["done"] + tally.statuses["failed"]
    return {
        "wall_seconds": wall,
        "recordings_per_second": analysed / wall if wall else None,
        "audio_seconds": round(tally.audio_seconds, 1),
        "mean_ms_per_recording": {stage: sum(v) / len(v) for stage, v in stages.items()},
    }


def _store(batch: Batch, fmt: str, content: IO[bytes], summary: dict[str, Any]) -> Report:
    key = storage.report_key(batch.pk, batch.model_version.slug, fmt)
    size = storage.put(key, content)
    report, _ = Report.objects.update_or_create(
        batch=batch,
        model_version=batch.model_version,
        format=fmt,
        defaults={"storage_key": key, "size_bytes": size, "summary": summary, "created_at": timezone.now()},
    )
    return report


def _spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


def _open_spool(spools: ExitStack) -> IO[bytes]:
    """A spool closed when ``spools`` closes."""
    return spools.enter_context(_spool())


# --- HTML and PDF ---------------------------------------------------------
#
# The page is jobs/templates/jobs/reports/batch_report.html (autoescaped); the
# files' rows (report_rows.html) are rendered while they are read, spooled, and
# streamed into the page where its rows comment stands: no report is held in memory.
# The same cells are spooled as JSON lines for the PDF (jobs.services.report_pdf),
# which draws the same page context. The report page (jobs.pages.reports) shows
# the context and the cells of one page of files at a time.

REPORT_TEMPLATE = "jobs/reports/batch_report.html"
ROWS_TEMPLATE = "jobs/reports/report_rows.html"
ROWS_MARK = "<!--rows-->"
REVIEW_FIRST_MARK = "<!--review-first-->"
PATIENTS_MARK = "<!--patients-->"
PATIENTS_TEMPLATE = "jobs/reports/patient_rows.html"
MARKS = re.compile("(" + "|".join(map(re.escape, (REVIEW_FIRST_MARK, PATIENTS_MARK, ROWS_MARK))) + ")")
ROWS_PER_RENDER = 500  # a template render costs more than the rows in it: render them in groups
FIGURES = [
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("macc", "MAcc (mean of the two)"),
    ("accuracy", "accuracy"),
]
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 420, 160


def _write_html(context: dict[str, Any], parts: dict[str, IO[bytes]], page: IO[bytes]) -> None:
    """The page, with each spool of ``parts`` streamed in where its mark stands."""
    for piece in MARKS.split(render_to_string(REPORT_TEMPLATE, context)):
        rows = parts.get(piece)
        if rows is None:
            page.write(piece.encode())
            continue
        rows.seek(0)
        while block := rows.read(storage.READ_BLOCK):
            page.write(block)


def page_context(batch: Batch, summary: dict[str, Any]) -> dict[str, Any]:
    """What the report's figures are drawn from, on the page and in the PDF: the summary
    (summarise's, as the Report rows keep it), shaped into cards, tables and bars."""
    counts = summary["counts"]
    decisions, errors = counts.get("by_decision") or {}, counts["by_error"]
    rule = verdicts.model_rule(batch.model_version)
    statuses = sorted((wording.status_text(status), count) for status, count in counts["by_status"].items())
    return {
        "name": batch.name,
        "status": batch.get_status_display(),
        "batch_id": str(batch.pk),
        "summary": summary,
        "reviews": summary.get("reviews") or {},
        "cards": [
            {"value": value, "name": name}
            for name, value in [("files", counts["files"]), *sorted(counts["by_class"].items())]
        ],
        "decisions": _table(["decision", "files"], sorted(decisions.items())) if decisions else None,
        "statuses": _table(["status", "files"], statuses),
        "errors": _error_table(errors) if errors else None,
        "flagged": " or ".join(reviews.flagged_classes(list(batch.model_version.classes), rule.positive)),
        "positive": rule.positive,
        "patients": _patients(summary),
        "histogram": _histogram(summary["confidence_histogram"]["counts"]),
        "metrics": _metrics(summary["metrics"]),
    }


class FileRows:
    """Rows of one of the reports' tables (files, or patients): rendered for the HTML page a
    group at a time into one spool, one line each, and kept as JSON lines for the PDF (and the
    JSON report's patients) in another."""

    def __init__(self, html: IO[bytes], cells: IO[bytes], *, template: str = ROWS_TEMPLATE) -> None:
        self.html = html
        self.cells = cells
        self.template = get_template(template)
        self.pending: list[dict[str, Any]] = []

    def add(self, cells: dict[str, Any]) -> None:
        self.pending.append(cells)
        self.cells.write(json.dumps(cells).encode() + b"\n")
        if len(self.pending) >= ROWS_PER_RENDER:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            lines = self.template.render({"rows": self.pending}).rstrip("\n")
            self.html.write(lines.encode() + b"\n")
            self.pending = []


def row_cells(row: dict[str, Any], verdict: Verdict | None) -> dict[str, Any]:
    """One file's cells for report_rows.html: the decision with how it was made
    ('p(abnormal) 0.42, threshold 0.39') and any reasons, the heart rate and its flag."""
    shown = verdict or NO_VERDICT
    rate = shown.heart_rate
    review = reviews.row_review(row)
    status = row["file_status"] or "pending"
    return {
        "path": row["path"],
        "patient": row["patient_id"],
        "location": row["location"],
        "status": status,
        "status_text": wording.status_text(status),
        "label": shown.label or "",
        "outcome": shown.outcome,
        "notes": [note for note in (shown.rule_text, wording.reasons_text(shown.reasons)) if note],
        "quality": row["quality"] or "",
        "heart_rate": "" if rate.bpm is None else f"{rate.bpm:.0f}",
        "heart_rate_flag": rate.bpm is not None and bool(rate.flag),
        "heart_rate_note": rate.note,
        "truth": row["label"] or "",
        "error": row["error"] or "",
        "review": _review_cell(review) if review else None,
    }


def _review_cell(review: reviews.LatestReview) -> dict[str, str]:
    """'normal (overridden) by alice, 2026-03-02 10:15' and the note."""
    return {
        "label": review.label,
        "action": review.action,
        "reviewed_by": review.reviewed_by,
        "when": f", {review.reviewed_at:%Y-%m-%d %H:%M}" if review.reviewed_at else "",
        "note": review.note,
    }


def _patients(summary: dict[str, Any]) -> dict[str, Any]:
    """How many patients, and how many have each verdict, most first (none in older summaries)."""
    found = summary.get("patients") or {"count": 0, "by_verdict": {}}
    by_verdict = sorted(found["by_verdict"].items(), key=lambda item: (-item[1], item[0]))
    return {"count": found["count"], "by_verdict": by_verdict}


def _error_table(errors: dict[str, int]) -> dict[str, Any]:
    """Why files were not analysed, in words, most frequent first."""
    by_reason: Counter[str] = Counter()
    for code, count in errors.items():
        by_reason[wording.error_text(code)] += count
    return _table(["reason", "files"], sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """_table.html's header and cells; numbers are right-aligned (class n)."""
    return {
        "header": header,
        "rows": [
            [{"kind": "n" if isinstance(cell, int | float) else "", "text": str(cell)} for cell in row]
            for row in rows
        ],
    }


def _histogram(counts: list[int]) -> dict[str, Any]:
    """_histogram.html's bars (a count above each) and axis ticks, in SVG user units."""
    height, bar = HISTOGRAM_HEIGHT, HISTOGRAM_WIDTH // len(counts)
    peak = max(counts) or 1
    bars = []
    for index, count in enumerate(counts):
        bar_height = round((height - 30) * count / peak)
        x, y = index * bar, height - 20 - bar_height
        bars.append(
            {
                "x": x + 2,
                "y": y,
                "width": bar - 4,
                "height": bar_height,
                "title": f"{index / len(counts):.1f}-{(index + 1) / len(counts):.1f}: {count}",
                "label_x": str(x + bar / 2),
                "label_y": y - 3,
                "label": count or "",
            }
        )
    ticks = [
        {"x": i * bar, "y": height - 5, "label": f"{i / len(counts):.1f}"}
        for i in range(0, len(counts) + 1, 2)
    ]
    return {"width": HISTOGRAM_WIDTH + 20, "height": height, "bars": bars, "ticks": ticks}


def _metrics(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    classes = metrics["confusion_matrix"]["classes"]
    matrix = metrics["confusion_matrix"]["rows_truth_columns_predicted"]
    figures = [(name, f"{metrics[key]:.3f}") for key, name in FIGURES if metrics.get(key) is not None]
    return {
        "labelled": metrics["labelled"],
        "matrix": _table(
            ["", *[f"predicted: {name}" for name in classes]],
            [(f"truth: {name}", *matrix[i]) for i, name in enumerate(classes)],
        ),
        "figures": _table(["measure", "value"], figures),
        "positive_class": str(metrics.get("positive_class", "-")),
    }
