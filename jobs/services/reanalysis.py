"""Re-analysis: read recordings already stored with another model version.

A request becomes one batch of kind `reanalysis` per organisation it touches,
so each program sees its own progress and reports. The batch waits in
`scheduled` until it is due (now, at a time, or when the organisation's next
default model is chosen: its own, or the global one if it has none); starting
it creates Analysis rows that point at the existing recordings, so no audio is
uploaded or copied, and queues them through the same analyse path as an upload.
Recordings the model has already read are recorded as skipped and never queued.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.models import Analysis, Batch, ModelVersion, Organisation, Prediction, Recording
from jobs.services import access, defaults, progress, queue
from jobs.services.refusals import Refused

logger = logging.getLogger(__name__)

NOW, AT, NEW_DEFAULT = "now", "at", "new_default"
WHEN_CHOICES = (NOW, AT, NEW_DEFAULT)
INSERT_BATCH = 2000


class ReanalysisRefused(Refused):
    """A re-analysis request the platform refuses."""


@dataclass(frozen=True)
class Selection:
    """Which recordings: some batches, a date range (upload dates), those a version read, or all."""

    batches: tuple[UUID, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None
    analysed_by: int | None = None
    everything: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "batches": [str(batch_id) for batch_id in self.batches],
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "analysed_by": self.analysed_by,
            "everything": self.everything,
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "Selection":
        since, until = values.get("since"), values.get("until")
        return cls(
            batches=tuple(UUID(str(batch_id)) for batch_id in values.get("batches") or ()),
            since=dt.date.fromisoformat(since) if since else None,
            until=dt.date.fromisoformat(until) if until else None,
            analysed_by=values.get("analysed_by"),
            everything=bool(values.get("everything")),
        )

    def is_empty(self) -> bool:
        return not (self.batches or self.since or self.until or self.analysed_by or self.everything)

    def recordings(self, organisation_id: int) -> QuerySet[Recording]:
        """Stored recordings of one organisation that match (duplicates removed)."""
        found = Recording.objects.filter(organisation_id=organisation_id, status=Recording.Status.STORED)
        if self.batches:
            # A re-analysis batch named here stands for the recordings it read.
            found = found.filter(Q(batch__in=self.batches) | Q(analyses__batch__in=self.batches))
        if self.since:
            found = found.filter(created_at__date__gte=self.since)
        if self.until:
            found = found.filter(created_at__date__lte=self.until)
        if self.analysed_by:
            found = found.filter(predictions__model_version=self.analysed_by)
        return found.distinct()


# --- who may ask, and about which organisations ----------------------------------------


def target_organisations(user: User, selection: Selection, organisation: str | None) -> list[Organisation]:
    allowed = access.research_organisations(user)
    if not allowed.exists():
        raise ReanalysisRefused(
            "forbidden", "Only researchers and staff can request a re-analysis.", status=403
        )
    if organisation:
        allowed = allowed.filter(slug=organisation)
        if not allowed.exists():
            raise ReanalysisRefused(
                "unknown_organisation", f"You cannot re-analyse recordings of {organisation!r}.", status=404
            )
    if selection.batches:
        batches = Batch.objects.filter(pk__in=selection.batches, organisation__in=allowed)
        found = set(batches.values_list("pk", flat=True))
        missing = [str(batch_id) for batch_id in selection.batches if batch_id not in found]
        if missing:
            # Other programs' batches are answered like batches that do not exist.
            raise ReanalysisRefused("unknown_batch", f"No such batch: {', '.join(missing)}", status=404)
        allowed = allowed.filter(pk__in=batches.values("organisation"))
    return list(allowed.filter(recordings__status=Recording.Status.STORED).distinct().order_by("name"))


# --- asking ----------------------------------------------------------------------------------


def request_reanalysis(
    user: User,
    *,
    selection: Selection,
    model_version: ModelVersion | None,
    when: str = NOW,
    run_at: dt.datetime | None = None,
    organisation: str | None = None,
    name: str = "",
) -> list[Batch]:
    """Create the scheduled re-analysis batches of a request; those due now start at once.

    No `model_version` means each organisation's default (its own, else the global one).
    """
    if selection.is_empty():
        raise ReanalysisRefused("empty_selection", "Say which recordings: batches, dates, a version or all.")
    due_at = _due_at(when, run_at)
    _check_model(model_version)
    organisations = target_organisations(user, selection, organisation)
    if not organisations:
        raise ReanalysisRefused("nothing_selected", "No stored recordings match this selection.")
    models = {target.pk: _model_for(when, model_version, target) for target in organisations}
    with transaction.atomic():
        batches = [
            Batch.objects.create(
                organisation=target,
                created_by=user,
                name=name or _default_name(when, models[target.pk]),
                kind=Batch.Kind.REANALYSIS,
                status=Batch.Status.SCHEDULED,
                model_version=models[target.pk],
                selection={**selection.to_json(), "when": when},
                scheduled_for=due_at,
            )
            for target in organisations
        ]
        if when == NOW:
            for batch in batches:
                send_start(batch.pk)
    return batches


def _default_name(when: str, model_version: ModelVersion) -> str:
    return (
        "Re-analysis with the next default model"
        if when == NEW_DEFAULT
        else f"Re-analysis with {model_version.slug}"
    )


def _due_at(when: str, run_at: dt.datetime | None) -> dt.datetime | None:
    if when not in WHEN_CHOICES:
        raise ReanalysisRefused("invalid_when", f"'when' must be one of {', '.join(WHEN_CHOICES)}.")
    if when == AT:
        if run_at is None:
            raise ReanalysisRefused("invalid_when", "Say at what time ('run_at') the re-analysis should run.")
        return run_at
    return timezone.now() if when == NOW else None


def _check_model(model_version: ModelVersion | None) -> None:
    if model_version is not None and model_version.status != ModelVersion.Status.ACTIVE:
        raise ReanalysisRefused(
            "model_not_active", f"{model_version.slug} is {model_version.status}; choose an active version."
        )


def _model_for(when: str, model_version: ModelVersion | None, organisation: Organisation) -> ModelVersion:
    """The version one organisation's batch is read with: the one asked for, or its default."""
    if when == NEW_DEFAULT or model_version is None:
        # For NEW_DEFAULT, replaced by the new default when it arrives; the batch needs a version until then.
        current = defaults.default_for(organisation)
        if current is None:
            raise ReanalysisRefused("no_default", "No default model is registered yet.")
        return current
    if not access.can_use_model(model_version, organisation):
        raise ReanalysisRefused(
            "model_not_published",
            f"{model_version.slug} is not published: it can read only its own organisation's recordings "
            "until staff publish it. Name that organisation with 'organisation'.",
        )
    return model_version


def send_start(batch_id: UUID | str) -> None:
    queue.send_after_commit(queue.START_REANALYSIS_TASK, [str(batch_id)])


# --- starting ---------------------------------------------------------------------------------


def start_reanalysis(batch_id: UUID | str, *, now: dt.datetime | None = None) -> list[int]:
    """Turn a due scheduled re-analysis into analyses; returns the ids queued.

    Safe to run twice: the batch is locked and must still be scheduled and due.
    """
    with transaction.atomic():
        batch = (
            Batch.objects.select_for_update()
            .filter(
                pk=batch_id,
                kind=Batch.Kind.REANALYSIS,
                status=Batch.Status.SCHEDULED,
                scheduled_for__lte=now or timezone.now(),
            )
            .select_related("model_version")
            .first()
        )
        if batch is None:
            return []
        selected = Selection.from_json(batch.selection).recordings(batch.organisation_id)
        recording_ids = list(selected.values_list("pk", flat=True))
        done = set(
            Prediction.objects.filter(
                model_version=batch.model_version_id, recording__in=selected.values("pk")
            ).values_list("recording_id", flat=True)
        )
        pending_ids = _create_analyses(batch, recording_ids, done)
        Batch.objects.filter(pk=batch.pk).update(
            status=Batch.Status.ANALYSING,
            started_at=timezone.now(),
            total_count=len(recording_ids),
            # Known in full when it starts: the progress and the API say so, as for an upload.
            expected_total=len(recording_ids),
            pending_count=len(pending_ids),
            skipped_count=len(done),
        )
        if pending_ids:
            queue.send_analysis(batch, pending_ids, chunk_size=settings.LUBDUB_ANALYSIS_CHUNK)
        progress.finalise_if_done(batch.pk)
    logger.info("re-analysis %s: %d queued, %d already read", batch.pk, len(pending_ids), len(done))
    return pending_ids


def _create_analyses(batch: Batch, recording_ids: list[int], done: set[int]) -> list[int]:
    finished = timezone.now()
    rows = [
        Analysis(batch=batch, recording_id=recording_id)
        if recording_id not in done
        else Analysis(
            batch=batch, recording_id=recording_id, status=Analysis.Status.SKIPPED, finished_at=finished
        )
        for recording_id in recording_ids
    ]
    created = Analysis.objects.bulk_create(rows, batch_size=INSERT_BATCH)
    return [row.pk for row in created if row.status == Analysis.Status.PENDING]


def start_due_reanalyses(now: dt.datetime | None = None) -> list[str]:
    """The beat's job: start every scheduled re-analysis whose time has come."""
    now = now or timezone.now()
    due = Batch.objects.filter(
        kind=Batch.Kind.REANALYSIS, status=Batch.Status.SCHEDULED, scheduled_for__lte=now
    ).order_by("scheduled_for")
    started = []
    for batch_id in due.values_list("pk", flat=True):
        start_reanalysis(batch_id, now=now)
        started.append(str(batch_id))
    return started


def start_waiting_for_default(
    model_version: ModelVersion, *, organisation: Organisation | None = None
) -> int:
    """Re-analyses waiting for a new default take it and become due now.

    With an organisation, its own new default: its waiting re-analyses. Without,
    the new global default: those of organisations with no active default of their own.
    """
    waiting = Batch.objects.filter(
        kind=Batch.Kind.REANALYSIS,
        status=Batch.Status.SCHEDULED,
        scheduled_for__isnull=True,
        selection__when=NEW_DEFAULT,
    )
    if organisation is not None:
        waiting = waiting.filter(organisation=organisation)
    else:
        waiting = waiting.exclude(organisation__default_model__status=ModelVersion.Status.ACTIVE)
    ids = list(waiting.values_list("pk", flat=True))
    if not ids:
        return 0
    Batch.objects.filter(pk__in=ids, status=Batch.Status.SCHEDULED).update(
        model_version=model_version, scheduled_for=timezone.now()
    )
    for batch_id in ids:
        send_start(batch_id)
    return len(ids)
