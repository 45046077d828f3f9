"""What every fault test asserts, and the faults themselves."""

import urllib.request
from typing import Any

import pytest
from django.db.models import Count, Q

from jobs import storage
from jobs.models import Analysis, Batch, Prediction, Recording


def assert_batch_ended_well(batch: Batch) -> None:
    """Finished; every recording has a result or a reason; no prediction twice."""
    batch.refresh_from_db()
    assert batch.is_finished, batch.status
    assert batch.pending_count == 0
    rejected_without_reason = Recording.objects.filter(
        batch=batch, status=Recording.Status.REJECTED, error_message=""
    )
    assert not rejected_without_reason.exists()
    analyses = Analysis.objects.filter(batch=batch)
    unexplained = analyses.exclude(
        Q(status=Analysis.Status.DONE, recording__predictions__model_version=batch.model_version_id)
        | Q(status=Analysis.Status.SKIPPED)
        | (Q(status=Analysis.Status.FAILED) & ~Q(error_message=""))
    )
    assert list(unexplained.values_list("recording__path", "status")) == []
    stored = Recording.objects.filter(batch=batch, status=Recording.Status.STORED).count()
    assert analyses.count() == stored
    duplicated = (
        Prediction.objects.filter(recording__batch=batch)
        .values("recording", "model_version")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(duplicated) == []


def lose_everything(settings: Any) -> None:
    """Empty the S3-API server the way a restart of the in-memory server does: buckets too."""
    endpoint = settings.STORAGES["default"]["OPTIONS"]["endpoint_url"]
    # The test's own loopback server (private_s3), never the shared one.
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=5).close()  # noqa: S310
    settings.S3_CREATE_BUCKET = False  # only to see that the bucket is gone
    with pytest.raises(storage.BucketMissing):
        storage.check()
    settings.S3_CREATE_BUCKET = True
