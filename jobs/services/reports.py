"""Batch reports: a CSV row per file, a JSON summary and an HTML page for clinicians.

Rows are streamed from Postgres into a temporary file and then to storage, so a
report of fifty thousand files needs no more memory than one of ten (bar one
float per file for the batch-shift check). Writing the reports is also where a
finished batch gets its batch-shift warning: every prediction is written by then.
Clinicians' reviews appear beside the model's results (the latest per recording)
and are counted, but change none of the model's figures; a review writes the
reports again.
"""

import csv
import html
import io
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from jobs import storage
from jobs.models import Batch, ModelVersion, Prediction, Report
from jobs.services import reviews, verdicts
from jobs.services.results import batch_recordings
from jobs.services.verdicts import Verdict
from ml import calibration, scoring
from ml.spreadsheet import text_cell

HISTOGRAM_BINS = 10
# A row without a prediction: every cell of the verdict is empty.
NO_VERDICT = Verdict(
    decision="", label=None, confidence=None, reasons=[], probability=None, threshold=None, positive=None
)
SPOOL_BYTES = 8 * 1024 * 1024
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "html": "text/html; charset=utf-8"}
ROW_FIELDS = (
    "path", "file_status", "predicted_label", "decision", "decision_reasons", "confidence",
    "probabilities", "quality", "heart_rate_bpm", "duration_s", "error", "error_code_value", "label",
    "site_probability", "site_calibration_id", "site_calibration_version", "site_name",
    "quality_reasons", "s1_onsets", "site_threshold", "positive_class", "model_threshold", "review",
)  # fmt: skip
REVIEW_COLUMNS = ["reviewed_label", "review_action", "reviewed_by", "reviewed_at", "review_note"]


def csv_columns(classes: list[str]) -> list[str]:
    probability_columns = [f"p_{name}" for name in classes]
    return [
        "path", "status", "label", "decision", "confidence", *probability_columns,
        "quality", "heart_rate_bpm", "duration_s", "model_version", "error",
        "site", "site_calibration", "site_probability",
        "threshold", "decision_reasons", "heart_rate_flag", *REVIEW_COLUMNS,
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
    """Write the CSV, JSON and HTML reports of a finished batch; safe to run again."""
    batch = Batch.objects.select_related("model_version", "organisation", "site").filter(pk=batch_id).first()
    if batch is None:
        return []  # deleted meanwhile
    version = batch.model_version
    classes = list(version.classes)
    tally = Tally(
        classes=classes, positive=scoring.graded_class(classes, version.manifest.get("positive_class"))
    )
    with (
        _spool() as csv_file,
        _spool() as rows_html,
        _spool() as uncertain,
        _spool() as re_record,
        _spool() as reviewed,
        _spool() as json_file,
    ):
        unsure = Unsure(uncertain=uncertain, re_record=re_record, reviewed=reviewed)
        _write_rows(batch, tally, csv_file, rows_html, unsure)
        batch.shift_warning = shift_warning(version, tally.positive_scores)
        Batch.objects.filter(pk=batch.pk).update(shift_warning=batch.shift_warning)
        summary = summarise(batch, tally)
        _write_json(summary, unsure, json_file)
        reports = [
            _store(batch, "csv", csv_file, summary),
            _store(batch, "json", json_file, summary),
        ]
        with _spool() as page:
            _write_html(batch, summary, rows_html, page)
            reports.append(_store(batch, "html", page, summary))
    Batch.objects.filter(pk=batch.pk).update(report_error_code="", report_error="", report_retry_at=None)
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


def summarise(batch: Batch, tally: Tally) -> dict[str, Any]:
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
class Unsure:
    """Spools for the JSON report, one line per recording: given no class (uncertain, to re-record),
    and reviewed by a clinician."""

    uncertain: IO[bytes]
    re_record: IO[bytes]
    reviewed: IO[bytes]


def _write_rows(
    batch: Batch, tally: Tally, csv_file: IO[bytes], rows_html: IO[bytes], unsure: Unsure
) -> None:
    text = io.TextIOWrapper(csv_file, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(csv_columns(tally.classes))
    for row in _rows(batch):
        verdict = verdicts.for_row(row)
        tally.add(row, verdict)
        writer.writerow(_csv_row(row, verdict, tally.classes, batch))
        rows_html.write(_html_row(row, verdict).encode())
        if verdict is not None and verdict.decision in (calibration.UNCERTAIN, verdicts.RE_RECORD):
            entry = {"path": row["path"], "reasons": verdict.reasons}
            spool = unsure.re_record if verdict.re_record else unsure.uncertain
            spool.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
        review = reviews.row_review(row)
        if review is not None:
            entry = {"path": row["path"], **_review_entry(review)}
            unsure.reviewed.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
    text.detach()


def _review_entry(review: reviews.LatestReview) -> dict[str, str]:
    return {
        "reviewed_label": review.label,
        "review_action": review.action,
        "model_decision": review.model_decision,
        "reviewed_by": review.reviewed_by,
        "reviewed_at": review.reviewed_at.isoformat() if review.reviewed_at else "",
        "review_note": review.note,
    }


def _write_json(summary: dict[str, Any], unsure: Unsure, out: IO[bytes]) -> None:
    """The summary with every uncertain recording and every one to re-record, with their
    reasons, and every reviewed one with its latest review, streamed from the spools.

    Only the summary is kept in the Report rows; the lists can be as long as the batch.
    """
    out.write(json.dumps(summary, indent=2, sort_keys=True).removesuffix("\n}").encode())
    for name, spool in (
        ("re_record_recordings", unsure.re_record),
        ("uncertain_recordings", unsure.uncertain),
        ("reviewed_recordings", unsure.reviewed),
    ):
        out.write(f',\n  "{name}": ['.encode())
        spool.seek(0)
        for index, line in enumerate(spool):
            out.write((b"," if index else b"") + b"\n    " + line.rstrip(b"\n"))
        out.write(b"\n  ]")
    out.write(b"\n}\n")


def _rows(batch: Batch) -> Iterator[dict[str, Any]]:
    yield from batch_recordings(batch).values(*ROW_FIELDS).iterator(chunk_size=2000)


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


# --- HTML -----------------------------------------------------------------

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;color:#1d232a;max-width:1100px;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.meta{color:#55606b}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #d5dbe1;padding:.25rem .6rem;text-align:left}th{background:#f1f4f7}
td.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #d5dbe1;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.5rem}.failed,.rejected{color:#a1260d}
.warning{border:1px solid #f0d49a;background:#fdf6e3;color:#7a4a00;border-radius:6px;padding:.6rem 1rem}
.reasons{color:#55606b;font-size:.85em}.flag{color:#7a4a00;font-size:.85em}
"""


_DECISIONS_NOTE = (
    "<p class=meta><em>re-record</em>: the recording is unusable, so it gets no result (its class, "
    "confidence and heart rate are not counted); <em>uncertain</em>: re-record or have a clinician "
    "review it. Each file's decision below shows the probability and the threshold it was made with.</p>"
)


def _write_html(batch: Batch, summary: dict[str, Any], rows_html: IO[bytes], page: IO[bytes]) -> None:
    page.write(_html_head(batch, summary).encode())
    rows_html.seek(0)
    while block := rows_html.read(storage.READ_BLOCK):
        page.write(block)
    page.write(b"</tbody></table></body></html>\n")


def _html_head(batch: Batch, summary: dict[str, Any]) -> str:
    e = html.escape
    counts = summary["counts"]
    cards = "".join(
        f'<div class="card"><b>{value}</b>{e(name)}</div>'
        for name, value in [("files", counts["files"]), *sorted(counts["by_class"].items())]
    )
    statuses = _table(["status", "files"], sorted(counts["by_status"].items()))
    errors = _table(["reason", "files"], sorted(counts["by_error"].items())) if counts["by_error"] else ""
    histogram = _histogram_svg(summary["confidence_histogram"]["counts"])
    decisions = counts.get("by_decision") or {}
    decided = _table(["decision", "files"], sorted(decisions.items())) if decisions else ""
    warning = summary.get("shift_warning")
    shift = f'<p class="warning" role="alert"><b>Batch shift.</b> {e(warning)}</p>' if warning else ""
    site = f" · site {e(summary['site']['name'])}" if summary.get("site") else ""
    counted = summary.get("reviews") or {}
    reviewed = (
        f"<p data-reviews>{counted['reviewed']} recording(s) reviewed by a clinician, "
        f"{counted['overridden']} overridden (given another class than the model's). The figures "
        "here are the model's; reviews change none of them.</p>"
        if counted.get("reviewed")
        else "<p data-reviews>No recording has been reviewed by a clinician yet.</p>"
    )
    site_rules = "".join(
        f"<p>Decisions of {rule['predictions']} file(s) were made with the calibration of site "
        f"{e(rule['site'])} (v{rule['version']}) instead of the model's own threshold.</p>"
        for rule in summary.get("site_calibrations") or []
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>LubDub report: {e(batch.name)}"
        f"</title><style>{_STYLE}</style></head><body><h1>Screening report: {e(batch.name)}</h1>"
        f'<p class="meta">{e(summary["organisation"])} · model {e(summary["model_version"])}{site} · '
        f"status {e(batch.get_status_display())} · batch {e(str(batch.pk))}</p>"
        f"<p>A screening aid, not a diagnosis: an <em>abnormal</em> result means the recording "
        f"should be reviewed by a clinician.</p>{shift}{site_rules}{reviewed}<div class=cards>{cards}</div>"
        f"{decided and '<h2>Decisions</h2>' + _DECISIONS_NOTE + decided}"
        f"<h2>Files by status</h2>{statuses}{errors and '<h2>Why files were not analysed</h2>' + errors}"
        f"<h2>Confidence of the predicted class</h2>{histogram}"
        f"{_metrics_html(summary['metrics'])}"
        "<h2>Every file</h2><table><thead><tr><th>file</th><th>status</th><th>result</th>"
        "<th>decision</th><th>quality</th><th>heart rate (bpm)</th><th>truth</th>"
        "<th>reason</th><th>clinician's review</th>"
        "</tr></thead><tbody>"
    )


def _html_row(row: dict[str, Any], verdict: Verdict | None) -> str:
    e = html.escape
    status = row["file_status"] or "pending"
    cells = [
        e(row["path"]),
        f'<span class="{e(status)}">{e(status)}</span>',
        e(verdict.label or "") if verdict else "",
        _decision_html(verdict) if verdict else "",
        e(row["quality"] or ""),
        _heart_rate_html(verdict) if verdict else "",
        e(row["label"] or ""),
        e(row["error"] or ""),
        _review_html(reviews.row_review(row)),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>\n"


def _review_html(review: reviews.LatestReview | None) -> str:
    """'normal (overridden) by alice, 2026-03-02 10:15' and the note, or nothing."""
    if review is None:
        return ""
    e = html.escape
    when = f", {review.reviewed_at:%Y-%m-%d %H:%M}" if review.reviewed_at else ""
    note = f'<br><span class="reasons">{e(review.note)}</span>' if review.note else ""
    return f"{e(review.label)} ({e(review.action)}) by {e(review.reviewed_by)}{when}{note}"


def _decision_html(verdict: Verdict) -> str:
    """The outcome, then how it was made ('p(abnormal) 0.42, threshold 0.39') and any reasons."""
    e = html.escape
    notes = [note for note in (verdict.rule_text, "; ".join(verdict.reasons)) if note]
    lines = "".join(f'<br><span class="reasons">{e(note)}</span>' for note in notes)
    return f"{e(verdict.outcome)}{lines}"


def _heart_rate_html(verdict: Verdict) -> str:
    rate = verdict.heart_rate
    if rate.bpm is None:
        return ""
    flag = f'<br><span class="flag">check: {html.escape(rate.note)}</span>' if rate.flag else ""
    return f"{rate.bpm:.0f}{flag}"


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(name))}</th>" for name in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if isinstance(c, int | float) else ""}">{e(str(c))}</td>' for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _histogram_svg(counts: list[int]) -> str:
    width, height, bar = 420, 160, 420 // len(counts)
    peak = max(counts) or 1
    bars = []
    for index, count in enumerate(counts):
        bar_height = round((height - 30) * count / peak)
        x, y = index * bar, height - 20 - bar_height
        bars.append(
            f'<rect x="{x + 2}" y="{y}" width="{bar - 4}" height="{bar_height}" fill="#2f6f9f">'
            f"<title>{index / len(counts):.1f}-{(index + 1) / len(counts):.1f}: {count}</title></rect>"
            f'<text x="{x + bar / 2}" y="{y - 3}" font-size="11" text-anchor="middle">{count or ""}</text>'
        )
    axis = "".join(
        f'<text x="{i * bar}" y="{height - 5}" font-size="11">{i / len(counts):.1f}</text>'
        for i in range(0, len(counts) + 1, 2)
    )
    return (
        f'<svg role="img" aria-label="confidence histogram" width="{width + 20}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{axis}</svg>'
    )


def _metrics_html(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "<p>No ground truth was supplied (labels.csv), so no accuracy figures.</p>"
    e = html.escape
    classes = metrics["confusion_matrix"]["classes"]
    matrix = metrics["confusion_matrix"]["rows_truth_columns_predicted"]
    rows = [(f"truth: {name}", *matrix[i]) for i, name in enumerate(classes)]
    figures = [
        (name, f"{metrics[key]:.3f}")
        for key, name in [("sensitivity", "sensitivity"), ("specificity", "specificity"),
                          ("macc", "MAcc (mean of the two)"), ("accuracy", "accuracy")]
        if metrics.get(key) is not None
    ]  # fmt: skip
    return (
        f"<h2>Against the ground truth ({metrics['labelled']} labelled files)</h2>"
        f"{_table(['', *[f'predicted: {c}' for c in classes]], rows)}"
        f"{_table(['measure', 'value'], figures)}"
        f"<p class=meta>Positive class: {e(str(metrics.get('positive_class', '-')))}.</p>"
    )
