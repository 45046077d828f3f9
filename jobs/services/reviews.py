"""Clinicians' reviews of recordings: confirm the model's outcome, or give another label.

Every review action is a new row (``jobs.models.Review``; the database refuses
updates) and the latest one is the recording's review. A review never changes a
prediction, nor the batch's figures against ground truth: those stay the
model's. The reports say how many recordings were reviewed and overridden, and
are written again after each review.

Who may review (jobs.services.access.is_member): any member of the recording's
organisation, whatever their role (clinicians are plain members). Staff see
every recording but review only where they are members.
"""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, F, JSONField, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.expressions import OrderBy
from django.db.models.functions import JSONObject, Lag, Lead
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.models import Batch, Organisation, Prediction, Recording, Review
from jobs.services import access, queue, verdicts
from jobs.services.refusals import Refused
from ml.calibration import UNCERTAIN

NOTE_MAX_LENGTH = 2000
CONFIRM = "confirm"
# The batch page's and the API's review filters, and what they are called on the page.
REVIEW_FILTERS = {
    "needs_review": "Needs review",
    "disagrees": "Disagrees with ground truth",
    "overridden": "Overridden",
    "reviewed": "Reviewed",
}
# A class whose decision needs a clinician when no model-specific positive class is named.
NORMAL = "normal"


class ReviewRefused(Refused):
    """Why a review was not recorded."""


def can_review(user: User, organisation: Organisation | int) -> bool:
    """Members of the organisation, whatever their role (access.is_member)."""
    return access.is_member(user, organisation)


def reviewed_prediction(recording: Recording, batch: Batch) -> Prediction | None:
    """The prediction a review in this batch is of: the batch's model's reading of the recording."""
    predictions = recording.predictions.select_related("model_version", "site_calibration__site")
    return predictions.filter(model_version=batch.model_version_id).first()


def outcome_of(prediction: Prediction) -> str:
    """What the model said, as the pages show it: a class, 'uncertain' or 're-record'."""
    return verdicts.for_prediction(prediction).outcome


def review_recording(
    user: User,
    recording: Recording,
    *,
    batch: Batch | None = None,
    label: str = "",
    confirm: bool = False,
    note: str = "",
) -> Review:
    """Record a review of the prediction the batch's model made for the recording.

    ``confirm`` takes the model's outcome as the label (a class, or 're-record');
    an uncertain outcome cannot be confirmed, only labelled. ``batch`` is the
    batch the recording is reviewed in (a re-analysis names another model); the
    recording's own by default. Raises ReviewRefused.
    """
    if not can_review(user, recording.organisation_id):
        raise ReviewRefused(
            "not_a_member", "Only members of the recording's organisation review its recordings.", 403
        )
    prediction = reviewed_prediction(recording, batch or recording.batch)
    if prediction is None:
        raise ReviewRefused(
            "no_prediction", "The model has not read this recording yet: nothing to review.", 409
        )
    label = _chosen_label(prediction, label=label, confirm=confirm)
    if len(note) > NOTE_MAX_LENGTH:
        raise ReviewRefused("note_too_long", f"A note has at most {NOTE_MAX_LENGTH} characters.", 400)
    outcome = outcome_of(prediction)
    review = Review.objects.create(
        recording=recording,
        model_version=prediction.model_version,
        model_decision=outcome,
        label=label,
        action=_action(outcome, label, list(prediction.model_version.classes)),
        note=note,
        reviewed_by=user,
        reviewed_at=timezone.now(),
    )
    _write_reports_again(recording)
    return review


def _chosen_label(prediction: Prediction, *, label: str, confirm: bool) -> str:
    classes = list(prediction.model_version.classes)
    if confirm and label:
        raise ReviewRefused("confirm_or_label", "Confirm the model's result or give a label, not both.", 400)
    if confirm:
        outcome = outcome_of(prediction)
        if outcome == UNCERTAIN:
            raise ReviewRefused(
                "nothing_to_confirm", "The model is uncertain about this recording: give a label.", 409
            )
        return outcome
    if not label:
        raise ReviewRefused("confirm_or_label", "Confirm the model's result or give a label.", 400)
    if label not in classes:
        raise ReviewRefused(
            "unknown_label", f"The label must be one of the model's classes: {', '.join(classes)}.", 400
        )
    return label


def _action(outcome: str, label: str, classes: list[str]) -> str:
    if label == outcome:
        return Review.Action.CONFIRMED
    if outcome in classes:
        return Review.Action.OVERRIDDEN
    return Review.Action.LABELLED  # the model gave no class: uncertain, or re-record


def _write_reports_again(recording: Recording) -> None:
    """Queue the reports of every reported batch the recording is in, after commit."""
    batches = (
        Batch.objects.filter(Q(pk=recording.batch_id) | Q(analyses__recording=recording))
        .filter(status__in=Batch.REPORTED, reports__isnull=False)
        .values_list("pk", "priority")
        .distinct()
    )
    for batch_id, priority in batches:
        queue.send_reports(batch_id, priority)


def history(recording: Recording) -> QuerySet[Review]:
    """Every review of the recording, newest first."""
    return recording.reviews.select_related("reviewed_by", "model_version").order_by("-reviewed_at", "-id")


def latest_review_column() -> Subquery:
    """The recording's latest review as one JSON object (null when none), for batch_recordings:
    label, action, note, model_decision, reviewed_by (user name) and reviewed_at (ISO 8601)."""
    latest = Review.objects.filter(recording=OuterRef("pk")).order_by("-reviewed_at", "-id")
    shown = JSONObject(
        label="label",
        action="action",
        note="note",
        model_decision="model_decision",
        reviewed_by="reviewed_by__username",
        reviewed_at="reviewed_at",
    )
    return Subquery(latest.values(latest_review=shown)[:1], output_field=JSONField())


@dataclass(frozen=True)
class LatestReview:
    """A row's latest review, read from latest_review_column."""

    label: str
    action: str
    note: str
    model_decision: str
    reviewed_by: str
    reviewed_at: Any

    @property
    def overridden(self) -> bool:
        return self.action == Review.Action.OVERRIDDEN


def row_review(row: Any) -> LatestReview | None:
    """The latest review of a row of batch_recordings (a values() dict or an annotated recording)."""
    found = row.get("review") if isinstance(row, dict) else getattr(row, "review", None)
    if not found:
        return None
    return LatestReview(
        label=found["label"],
        action=found["action"],
        note=found["note"],
        model_decision=found["model_decision"],
        reviewed_by=found["reviewed_by"] or "",
        reviewed_at=parse_datetime(found["reviewed_at"]) if found["reviewed_at"] else None,
    )


def flagged_classes(classes: list[str], positive: str | None) -> list[str]:
    """Classes whose decision needs a clinician: the model's positive class, else every class but normal."""
    if positive in classes:
        return [str(positive)]
    return [name for name in classes if name != NORMAL]


def filter_reviews(
    rows: QuerySet[Any], wanted: str, *, classes: list[str], positive: str | None
) -> QuerySet[Any]:
    """Narrow rows of batch_recordings to one of REVIEW_FILTERS ("" keeps them all).

    needs_review: not reviewed yet, and decided a flagged class (abnormal) or
    uncertain, or unusable (to re-record). disagrees: the model's class differs
    from the ground truth of labels.csv (recordings given a class only, as in
    the confusion matrix). overridden: the latest review gave another class
    than the model's. reviewed: reviewed at all.
    """
    if wanted == "needs_review":
        flagged = flagged_classes(classes, positive)
        decided = (
            Q(decision__in=[*flagged, UNCERTAIN])
            | Q(decision="", predicted_label__in=flagged)
            | Q(quality=verdicts.UNUSABLE)
        )
        return rows.filter(decided, review__isnull=True)
    if wanted == "disagrees":
        given_class = Q(predicted_label__isnull=False) & ~Q(quality=verdicts.UNUSABLE)
        return rows.filter(given_class, label__in=classes).exclude(predicted_label=F("label"))
    if wanted == "overridden":
        return rows.filter(review__action=Review.Action.OVERRIDDEN)
    if wanted == "reviewed":
        return rows.filter(review__isnull=False)
    return rows


def review_counts(rows: QuerySet[Any]) -> dict[str, int]:
    """How many of the rows are reviewed, and how many of those overridden."""
    return rows.aggregate(
        reviewed=Count("pk", filter=Q(review__isnull=False)),
        overridden=Count("pk", filter=Q(review__action=Review.Action.OVERRIDDEN)),
    )


def neighbours(
    rows: QuerySet[Any], shown: QuerySet[Any], *, recording_id: int, ordering: list[OrderBy | str]
) -> tuple[int | None, int | None]:
    """The recordings before and after this one among ``shown`` (a filter of ``rows``, the
    batch's), in ``ordering``; None at either end.

    The recording counts as shown even when the filter no longer lists it (just
    reviewed out of "needs review"), so the reader can go on from it.
    """
    listed = rows.filter(Q(pk__in=shown.order_by().values("pk")) | Q(pk=recording_id))
    return _neighbours_in(listed, recording_id=recording_id, ordering=ordering)


def _neighbours_in(
    rows: QuerySet[Any], *, recording_id: int, ordering: list[OrderBy | str]
) -> tuple[int | None, int | None]:
    ranked = rows.order_by().annotate(
        previous_id=Window(Lag("pk"), order_by=ordering),
        next_id=Window(Lead("pk"), order_by=ordering),
    )
    near = ranked.filter(Q(previous_id=recording_id) | Q(next_id=recording_id))
    previous = following = None
    for pk, previous_id, next_id in near.values_list("pk", "previous_id", "next_id"):
        if next_id == recording_id:
            previous = pk
        if previous_id == recording_id:
            following = pk
    return previous, following
