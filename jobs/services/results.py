"""Per-file results of a batch: one row per recording, shared by API, pages and reports."""

from django.db.models import (
    Case,
    CharField,
    F,
    FilteredRelation,
    FloatField,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, NullIf

from jobs.models import Batch, Recording
from jobs.services import reviews, verdicts
from ml.calibration import UNCERTAIN

FILE_STATUSES = ("rejected", "pending", "running", "done", "failed", "skipped", "cancelled")


def batch_recordings(batch: Batch) -> QuerySet[Recording]:
    """Recordings of the batch with its analysis state and its model's prediction.

    Annotations: file_status, analysis_error_code, error (message), predicted_label,
    decision, decision_reasons, confidence, probabilities, quality, quality_reasons,
    heart_rate_bpm, s1_onsets (the segmentation's S1 onsets), prediction_id,
    raw_probability, and the site's share of the decision: site_probability,
    site_calibration_id, site_calibration_version, site_name, site_threshold (null
    when the bundle's rule decided); with the model's positive_class and
    model_threshold on every row, verdicts.for_row needs nothing else; and review,
    the recording's latest review as JSON (reviews.row_review reads it). These are
    the stored facts: what is shown of them (no diagnosis for an unusable
    recording) is verdicts.for_row's.
    """
    rule = verdicts.model_rule(batch.model_version)
    return (
        Recording.objects.annotate(
            this_analysis=FilteredRelation("analyses", condition=Q(analyses__batch=batch.pk)),
            this_prediction=FilteredRelation(
                "predictions", condition=Q(predictions__model_version=batch.model_version_id)
            ),
        )
        .filter(Q(batch=batch.pk) | Q(this_analysis__isnull=False))
        .annotate(
            file_status=Case(
                When(status=Recording.Status.REJECTED, then=Value("rejected")),
                default=F("this_analysis__status"),
                output_field=CharField(),
            ),
            error_code_value=Coalesce(
                NullIf(F("error_code"), Value("")), F("this_analysis__error_code"), output_field=CharField()
            ),
            error=Coalesce(
                NullIf(F("error_message"), Value("")),
                F("this_analysis__error_message"),
                output_field=TextField(),
            ),
            predicted_label=F("this_prediction__label"),
            decision=F("this_prediction__decision"),
            decision_reasons=F("this_prediction__decision_reasons"),
            confidence=F("this_prediction__confidence"),
            probabilities=F("this_prediction__probabilities"),
            quality=F("this_prediction__quality"),
            quality_reasons=F("this_prediction__quality_reasons"),
            heart_rate_bpm=F("this_prediction__heart_rate_bpm"),
            s1_onsets=KeyTransform("s1_s", "this_prediction__segments"),
            prediction_id=F("this_prediction__id"),
            raw_probability=F("this_prediction__raw_probability"),
            site_probability=F("this_prediction__site_probability"),
            site_calibration_id=F("this_prediction__site_calibration_id"),
            site_calibration_version=F("this_prediction__site_calibration__version"),
            site_name=F("this_prediction__site_calibration__site__name"),
            site_threshold=F("this_prediction__site_calibration__threshold"),
            positive_class=Value(rule.positive, output_field=CharField()),
            model_threshold=Value(rule.threshold, output_field=FloatField()),
            review=reviews.latest_review_column(),
        )
        .order_by("path", "id")
    )


def filter_rows(
    rows: QuerySet[Recording], *, status: str = "", label: str = "", quality: str = "", patient: str = ""
) -> QuerySet[Recording]:
    """Narrow the rows of batch_recordings by file status, predicted label, quality and patient.

    A label names the recordings given that class: unusable ones, to be
    re-recorded, are given none, whatever the model read in them. A patient is
    named exactly (its id as labels.csv or the file's name gave it), spaces around it aside.
    """
    wanted = {
        "file_status": status,
        "predicted_label": label,
        "quality": quality,
        "patient_id": patient.strip(),
    }
    # Annotation names, which the type checker cannot see as fields.
    rows = rows.filter(**{name: value for name, value in wanted.items() if value})
    return rows.exclude(**{"quality": verdicts.UNUSABLE}) if label else rows


def review_first(batch: Batch, rows: QuerySet[Recording] | None = None) -> QuerySet[Recording]:
    """The rows a clinician should look at first, highest risk first.

    Those given the flagged class (a screening model's positive class, abnormal)
    or uncertain; not an unusable one, which is to be re-recorded whatever the
    model read in it. Risk is the probability the decision was made on (the
    site's when a site calibration decided, else the model's p(positive)), or for
    a model without a positive class the confidence of its class; ties by path.
    """
    rule = verdicts.model_rule(batch.model_version)
    flagged = reviews.flagged_classes(list(batch.model_version.classes), rule.positive)
    rows = batch_recordings(batch) if rows is None else rows
    chosen = rows.filter(
        Q(decision__in=[*flagged, UNCERTAIN]) | Q(decision="", predicted_label__in=flagged)
    ).exclude(Q(quality=verdicts.UNUSABLE))
    risk: F | Coalesce
    if rule.positive is None:
        risk = F("confidence")
    else:
        model_probability = Cast(KeyTextTransform(rule.positive, "probabilities"), FloatField())
        risk = Coalesce(F("site_probability"), model_probability)
    return chosen.annotate(risk=risk).order_by(F("risk").desc(nulls_last=True), "path", "id")
