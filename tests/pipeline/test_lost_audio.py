"""Audio objects lost from storage come back with the next upload of the same recordings."""

import hashlib
from typing import Any

from jobs import storage
from jobs.models import Analysis, Batch, Recording
from jobs.services import packs
from tests.pipeline.conftest import sample_archive, upload, wait_for_batch

NAMES = ["a0033.wav", "c0002.wav", "e00014.wav"]


def test_it_restores_lost_audio_from_a_new_upload_of_the_same_archive(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    archive = sample_archive(NAMES)
    first = wait_for_batch(upload(api, archive, "first.zip")["id"])
    assert first.done_count == len(NAMES)
    keys = set(Recording.objects.filter(batch=first).values_list("storage_key", flat=True))
    assert len(keys) == 1 and storage.is_pack_key(next(iter(keys)))  # the three recordings in one pack
    for key in keys:  # a bucket emptied by mistake
        storage.delete(key)
    assert not any(storage.exists(key) for key in keys)

    second = wait_for_batch(upload(api, archive, "again.zip")["id"])

    assert (second.status, second.done_count, second.failed_count) == (Batch.Status.COMPLETED, len(NAMES), 0)
    # The first batch's rows point at the copy the second upload stored, and read back whole.
    for row in Recording.objects.filter(batch=first):
        audio = packs.read_one(packs.span_of(row.storage_key, row.storage_offset, row.size_bytes))
        assert row.storage_key not in keys and hashlib.sha256(audio).hexdigest() == row.sha256
    statuses = set(Analysis.objects.filter(batch=second).values_list("status", flat=True))
    assert statuses == {Analysis.Status.DONE}


def test_it_lists_recordings_whose_audio_is_missing(shared_worker: Any, default_model: Any, api: Any) -> None:
    import io

    import pytest
    from django.core.management import CommandError, call_command

    batch = wait_for_batch(upload(api, sample_archive(NAMES[:2]), "check.zip")["id"])
    keys = set(Recording.objects.filter(batch=batch).values_list("storage_key", flat=True))
    assert len(keys) == 1  # both recordings in one pack
    pack = keys.pop()
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    assert "every stored recording has its audio object" in out.getvalue()
    storage.delete(pack)

    out = io.StringIO()
    with pytest.raises(CommandError, match="1 audio object"):
        call_command("check_storage", stdout=out)
    assert f"{pack}\t2 row(s)" in out.getvalue()
