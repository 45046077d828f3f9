"""Cancelling and deleting batches."""

import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobs import storage
from jobs.models import Analysis, Batch, Recording

logger = logging.getLogger(__name__)


class BatchFinished(ValueError):
    pass


def cancel_batch(batch: Batch, *, user: Any = None) -> Batch:
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
    locked.refresh_from_db()
    return locked


def delete_batch(batch: Batch, *, user: Any = None) -> int:
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
        if key.startswith("recordings/") and Recording.objects.filter(storage_key=key).exists():
            continue  # uploaded again meanwhile
        try:
            storage.delete(key)
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def _owned_keys(batch: Batch) -> list[str]:
    audio = set(
        Recording.objects.filter(batch=batch).exclude(storage_key="").values_list("storage_key", flat=True)
    )
    shared = set(
        Recording.objects.filter(storage_key__in=audio)
        .exclude(batch=batch)
        .values_list("storage_key", flat=True)
    )
    reports = list(batch.reports.values_list("storage_key", flat=True))
    upload = [batch.upload_key] if batch.upload_key else []
    return upload + reports + sorted(audio - shared)
