"""Deleting batches whose recordings lie in packs, and sweeping audio objects no row refers to.

On a private S3-API server: the sweep lists whole folders, and the shared test
bucket holds other tests' objects.
"""

import datetime
import subprocess
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from jobs import storage
from jobs.models import Batch, Recording
from jobs.services import lifecycle, packs, shared_audio
from tests.factories import BatchFactory, RecordingFactory


def _packed_batch(audio: list[bytes], **fields: Any) -> tuple[Batch, list[packs.Span]]:
    pack = packs.Pack()
    spans = [pack.add(data) for data in audio]
    pack.write()
    batch = BatchFactory(**fields)
    for index, span in enumerate(spans):
        RecordingFactory(
            batch=batch,
            path=f"r{index}.wav",
            storage_key=span.key,
            storage_offset=span.offset,
            size_bytes=span.length,
        )
    return batch, spans


def _refer(batch: Batch, span: packs.Span) -> None:
    """Another batch's recording of the same audio: referenced, not stored again."""
    RecordingFactory(
        batch=batch, path="same.wav", storage_key=span.key, storage_offset=span.offset, size_bytes=span.length
    )


def test_it_deletes_a_batchs_pack_unless_another_batch_refers_to_it(
    private_s3: subprocess.Popen[bytes], db: None
) -> None:
    alone, alone_spans = _packed_batch([b"RIFF-a", b"RIFF-b"])
    shared, shared_spans = _packed_batch([b"RIFF-c", b"RIFF-d"], organisation=alone.organisation)
    later = BatchFactory(organisation=alone.organisation)
    _refer(later, shared_spans[1])

    lifecycle.delete_batch(alone)
    lifecycle.delete_batch(shared)

    assert not storage.exists(alone_spans[0].key)
    assert packs.read_one(shared_spans[1]) == b"RIFF-d"  # the later batch still reads its recording
    lifecycle.delete_batch(later)
    assert not storage.exists(shared_spans[0].key)


def test_it_sweeps_what_a_crash_between_the_row_and_the_object_delete_left(
    private_s3: subprocess.Popen[bytes], db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed, crashed_spans = _packed_batch([b"RIFF-gone-1", b"RIFF-gone-2"])
    kept, kept_spans = _packed_batch([b"RIFF-kept"], organisation=crashed.organisation)
    legacy = RecordingFactory(batch=kept, path="legacy.wav", sha256="f" * 64)
    storage.put_bytes(legacy.storage_key, b"RIFF-legacy")
    storage.put_bytes(storage.recording_key("e" * 64), b"RIFF-legacy-orphan")

    def crash(key: str) -> None:
        raise storage.StorageUnavailable("the process died here")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "delete", crash)
        with pytest.raises(storage.StorageUnavailable):
            lifecycle.delete_batch(crashed)
    assert not Batch.objects.filter(pk=crashed.pk).exists()  # rows gone, pack still there
    assert storage.exists(crashed_spans[0].key)

    assert lifecycle.sweep_orphans() == 0  # younger than the grace period: an ingest may be committing
    assert lifecycle.sweep_orphans(grace=datetime.timedelta(0)) == 2

    assert not storage.exists(crashed_spans[0].key)
    assert not storage.exists(storage.recording_key("e" * 64))
    assert packs.read_one(kept_spans[0]) == b"RIFF-kept"
    assert storage.read_bytes(legacy.storage_key) == b"RIFF-legacy"


def test_it_sweeps_the_report_objects_of_batches_that_no_longer_exist(
    private_s3: subprocess.Popen[bytes], db: None
) -> None:
    import uuid

    kept = BatchFactory()
    kept_key = storage.report_key(kept.pk, kept.model_version.slug, "csv")
    gone_key = storage.report_key(uuid.uuid4(), kept.model_version.slug, "pdf")
    odd_key = "reports/not-a-batch/notes.txt"
    for key in (kept_key, gone_key, odd_key):
        storage.put_bytes(key, b"report")

    assert lifecycle.sweep_orphans() == 0  # younger than the grace period
    assert lifecycle.sweep_orphans(grace=datetime.timedelta(0)) == 1

    assert not storage.exists(gone_key)
    assert storage.exists(kept_key) and storage.exists(odd_key)


def test_it_sweeps_from_the_command_line(private_s3: subprocess.Popen[bytes], db: None) -> None:
    pack = packs.Pack()
    pack.add(b"RIFF-nobody")
    pack.write()

    call_command("sweep_storage", "--grace-hours", "0")

    assert not storage.exists(pack.key)


def test_it_lists_packs_that_are_gone_or_shorter_than_their_rows_say(
    private_s3: subprocess.Popen[bytes], db: None
) -> None:
    from jobs.services.storage_check import missing_audio

    whole, whole_spans = _packed_batch([b"RIFF-1", b"RIFF-22"])
    cut, cut_spans = _packed_batch([b"RIFF-333", b"RIFF-4444"], organisation=whole.organisation)
    gone, gone_spans = _packed_batch([b"RIFF-55555"], organisation=whole.organisation)
    legacy = RecordingFactory(batch=whole, path="legacy.wav", sha256="f" * 64, size_bytes=11)
    storage.put_bytes(legacy.storage_key, b"RIFF-legacy")
    assert list(missing_audio()) == []

    storage.put_bytes(cut_spans[0].key, packs.read_one(cut_spans[0]) + b"RIFF")  # the second cut short
    storage.delete(gone_spans[0].key)

    assert sorted((found.key, found.rows) for found in missing_audio()) == sorted(
        [(cut_spans[0].key, 2), (gone_spans[0].key, 1)]
    )


def test_it_moves_legacy_recordings_into_packs_and_leaves_the_old_objects_to_the_sweep(
    private_s3: subprocess.Popen[bytes], db: None
) -> None:
    import io

    first = BatchFactory()
    second = BatchFactory(organisation=first.organisation)
    shared = [RecordingFactory(batch=batch, path="shared.wav", sha256="a" * 64) for batch in (first, second)]
    alone = RecordingFactory(batch=first, path="alone.wav", sha256="b" * 64)
    lost = RecordingFactory(batch=first, path="lost.wav", sha256="c" * 64)
    storage.put_bytes(shared[0].storage_key, b"RIFF-shared")
    storage.put_bytes(alone.storage_key, b"RIFF-alone")
    old_keys = {shared[0].storage_key, alone.storage_key}

    out, err = io.StringIO(), io.StringIO()
    call_command("pack_recordings", stdout=out, stderr=err)

    assert "3 recording row(s) moved into 1 pack(s)" in out.getvalue()
    assert f"missing, left as it is: {lost.storage_key}" in err.getvalue()
    rows = {row.pk: row for row in Recording.objects.filter(pk__in=[r.pk for r in [*shared, alone, lost]])}
    moved = [rows[r.pk] for r in [*shared, alone]]
    assert len({row.storage_key for row in moved}) == 1 and storage.is_pack_key(moved[0].storage_key)
    assert [packs.read_one(packs.span_of(r.storage_key, r.storage_offset, r.size_bytes)) for r in moved] == [
        b"RIFF-shared",
        b"RIFF-shared",
        b"RIFF-alone",
    ]
    assert rows[lost.pk].storage_key == lost.storage_key
    assert all(storage.exists(key) for key in old_keys)  # until the sweep

    call_command("pack_recordings", stdout=io.StringIO(), stderr=io.StringIO())  # nothing left to move
    assert Recording.objects.get(pk=alone.pk).storage_key == moved[2].storage_key
    assert lifecycle.sweep_orphans(grace=datetime.timedelta(0)) == 2
    assert not any(storage.exists(key) for key in old_keys)
    assert packs.read_one(packs.span_of(moved[2].storage_key, moved[2].storage_offset, moved[2].size_bytes))


def test_it_sweeps_storage_every_hour_from_the_beat_schedule(
    private_s3: subprocess.Popen[bytes], db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.celery_app import app
    from workers import tasks

    entry = app.conf.beat_schedule["sweep-storage"]
    kept, kept_spans = _packed_batch([b"RIFF-kept"])
    orphan = packs.Pack()
    orphan.add(b"RIFF-nobody")
    orphan.write()
    assert tasks.sweep_storage() == 0  # both younger than the grace period
    monkeypatch.setattr(lifecycle, "ORPHAN_GRACE", datetime.timedelta(0))

    assert (entry["task"], entry["schedule"]) == (tasks.sweep_storage.name, 3600.0)
    assert tasks.sweep_storage() == 1
    assert not storage.exists(orphan.key) and packs.read_one(kept_spans[0]) == b"RIFF-kept"


def test_it_finds_the_rows_that_reference_objects_by_index(db: None) -> None:
    # The sweep and batch deletion look up a page of keys at a time; on a table of
    # millions of recordings a sequential scan per page would make them crawl.
    keys = [f"packs/{index:04d}" for index in range(lifecycle.SWEEP_PAGE)]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = shared_audio.referencing(keys).values_list("storage_key").explain()
    assert "recording_storage_key" in plan
