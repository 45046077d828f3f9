"""Cancelling and deleting batches, and sweeping stored objects no row refers to."""

import datetime
import logging
import uuid
from collections.abc import Iterator, Sequence

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import storage
from jobs.models import Analysis, Batch, Recording
from jobs.services import shared_audio, webhooks

logger = logging.getLogger(__name__)

AUDIO_FOLDERS = ("packs/", "recordings/")
REPORT_FOLDER = "reports/"
# Ingest writes new packs before the rows that name them commit: an object
# younger than this may be about to be referred to. (Audio an ingest shares with
# another batch is old: shared_audio's locks protect it instead.)
ORPHAN_GRACE = datetime.timedelta(hours=6)
SWEEP_PAGE = 500


class BatchFinished(ValueError):
    pass


def cancel_batch(batch: Batch, *, user: User | None = None) -> Batch:
    """Stop a batch: unclaimed and running analyses are cancelled; finished ones stay."""
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        if locked.is_finished:
            raise BatchFinished(f"The batch is already {locked.get_status_display().lower()}.")
        stopped = Analysis.objects.filter(
            batch=locked, status__in=[Analysis.Status.PENDING, Analysis.Status.RUNNING]
        ).update(status=Analysis.Status.CANCELLED, finished_at=timezone.now())
        Batch.objects.filter(pk=locked.pk).update(
            status=Batch.Status.CANCELLED,
            pending_count=F("pending_count") - stopped,
            finished_at=timezone.now(),
        )
        webhooks.notify_finished(locked.pk)
    locked.refresh_from_db()
    return locked


def delete_batch(batch: Batch, *, user: User | None = None) -> int:
    """Delete a batch, its rows and the stored objects nobody else refers to.

    Returns how many stored objects were removed. Audio shared with another
    batch's recordings (same content, same key) is kept.
    """
    if not batch.is_finished:
        cancel_batch(batch, user=user)
    keys = _owned_keys(batch)
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).delete()
    removed = 0
    # Slow deletions happen after the rows are gone, outside the transaction.
    for key in keys:
        if key.startswith(AUDIO_FOLDERS):
            continue
        try:
            storage.delete(key)
            removed += 1
        except FileNotFoundError:
            continue
    # Audio only where no row refers to it: uploaded again meanwhile, or being.
    audio = [key for key in keys if key.startswith(AUDIO_FOLDERS)]
    return removed + len(shared_audio.delete_unreferenced(audio))


def _owned_keys(batch: Batch) -> list[str]:
    audio = set(
        Recording.objects.filter(batch=batch).exclude(storage_key="").values_list("storage_key", flat=True)
    )
    shared = set(shared_audio.referencing(audio).exclude(batch=batch).values_list("storage_key", flat=True))
    reports = list(batch.reports.values_list("storage_key", flat=True))
    upload = [batch.upload_key] if batch.upload_key else []
    return upload + reports + sorted(audio - shared)


def sweep_orphans(*, grace: datetime.timedelta | None = None) -> int:
    """Delete the audio objects (packs, per-recording objects) no recording row refers to,
    and the report objects of batches that no longer exist.

    A crash between a batch's row delete and its object delete, or an ingest
    that stopped between writing audio and committing its rows, leaves such
    objects; so can a report written while its batch was deleted. Objects
    younger than `grace` (default ORPHAN_GRACE) are left alone. Returns how many
    were deleted.
    """
    cutoff = timezone.now() - (ORPHAN_GRACE if grace is None else grace)
    removed = 0
    for folder in AUDIO_FOLDERS:
        for page in _older_pages(folder, cutoff):
            removed += _delete_unreferenced(page)
    for page in _older_pages(REPORT_FOLDER, cutoff):
        removed += _delete_batchless_reports(page)
    return removed


def _older_pages(folder: str, cutoff: datetime.datetime) -> Iterator[list[str]]:
    """The keys under ``folder`` last written before ``cutoff``, SWEEP_PAGE at a time."""
    page: list[str] = []
    for found in storage.list_objects(folder):
        if found.modified < cutoff:
            page.append(found.key)
        if len(page) >= SWEEP_PAGE:
            yield page
            page = []
    if page:
        yield page


def _delete_batchless_reports(keys: Sequence[str]) -> int:
    # storage.report_key: reports/<batch id>/<model version>.<format>
    owners: dict[str, uuid.UUID] = {}
    for key in keys:
        try:
            owners[key] = uuid.UUID(key.split("/")[1])
        except (IndexError, ValueError):
            continue  # not a report's key: not ours to judge
    alive = set(Batch.objects.filter(pk__in=set(owners.values())).values_list("pk", flat=True))
    removed = 0
    for key, owner in owners.items():
        if owner not in alive:
            storage.delete(key)
            logger.info("swept report object %s: its batch no longer exists", key)
            removed += 1
    return removed


def _delete_unreferenced(keys: Sequence[str]) -> int:
    # A first look without locks: most objects listed are referred to.
    referenced = set(shared_audio.referencing(keys).values_list("storage_key", flat=True))
    swept = shared_audio.delete_unreferenced([key for key in keys if key not in referenced])
    for key in swept:
        logger.info("swept audio object %s: no recording refers to it", key)
    return len(swept)
