"""Archive limits: bombs, traversal and oversize requests are refused cheaply."""

import io
import shutil
import tracemalloc
import zipfile
from typing import Any

import pytest

from jobs import storage
from jobs.models import Batch, Recording
from jobs.services import ingest, uploads
from tests.conftest import SAMPLES
from tests.factories import BatchFactory

ZEROS = bytes(1024 * 1024)


def _stored_batch(data: bytes, filename: str = "upload.zip") -> Batch:
    batch = BatchFactory()
    batch.upload_key = storage.upload_key(batch.pk, filename)
    batch.upload_name = filename
    batch.save()
    storage.put_bytes(batch.upload_key, data)
    return batch


def _bomb(members: int, megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            with archive.open(f"bomb{index}.wav", "w") as member:
                member.write(b"RIFF")
                for _ in range(megabytes):
                    member.write(ZEROS)
    return buffer.getvalue()


@pytest.mark.django_db
def test_it_refuses_a_zip_bomb_without_inflating_it(settings: Any) -> None:
    settings.LUBDUB_MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
    batch = _stored_batch(_bomb(members=3, megabytes=100))
    free_before = shutil.disk_usage("/tmp").free

    tracemalloc.start()
    ingest.ingest_batch(batch.pk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    batch.refresh_from_db()
    assert (batch.status, batch.error_code) == (Batch.Status.FAILED, "zip_bomb")
    assert peak < 16 * 1024 * 1024
    assert free_before - shutil.disk_usage("/tmp").free < 64 * 1024 * 1024


@pytest.mark.django_db
def test_it_rejects_a_high_ratio_member_and_keeps_the_rest() -> None:
    buffer = io.BytesIO(_bomb(members=1, megabytes=50))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.write(SAMPLES / "a0033.wav", "a0033.wav")
    batch = _stored_batch(buffer.getvalue())

    tracemalloc.start()
    ingest.ingest_batch(batch.pk, queue_analysis=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    rows = dict(Recording.objects.filter(batch=batch).values_list("path", "error_code"))
    assert rows == {"bomb0.wav": "zip_bomb", "a0033.wav": ""}
    assert peak < 16 * 1024 * 1024


@pytest.mark.django_db
def test_it_never_writes_outside_the_content_addressed_keys() -> None:
    buffer = io.BytesIO()
    audio = (SAMPLES / "a0035.wav").read_bytes()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in [
            "../../etc/passwd.wav",
            "/abs/x.wav",
            "..\\..\\win.wav",
            "C:/drive.wav",
            "ok/../../up.wav",
        ]:
            archive.writestr(name, audio)
    batch = _stored_batch(buffer.getvalue())

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    rows = dict(Recording.objects.filter(batch=batch).values_list("path", "error_code"))
    assert set(rows.values()) <= {"unsafe_path", "absolute_path"} and len(rows) == 5
    assert not Recording.objects.filter(batch=batch, status=Recording.Status.STORED).exists()


@pytest.mark.django_db
def test_it_fails_a_batch_whose_upload_is_not_a_zip() -> None:
    batch = _stored_batch(b"PK\x03\x04 this is not really an archive", "broken.zip")

    ingest.ingest_batch(batch.pk)

    batch.refresh_from_db()
    assert (batch.status, batch.error_code) == (Batch.Status.FAILED, "not_a_zip")


@pytest.mark.django_db
def test_it_reports_a_malformed_labels_file_and_keeps_the_recordings() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(SAMPLES / "a0033.wav", "a0033.wav")
        archive.writestr("labels.csv", "path,label\na0033.wav,abnormal,extra\n")
    batch = _stored_batch(buffer.getvalue())

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    rows = {r.path: r for r in Recording.objects.filter(batch=batch)}
    assert rows["labels.csv"].error_code == "malformed_labels"
    assert "line 2" in rows["labels.csv"].error_message
    assert rows["a0033.wav"].status == Recording.Status.STORED and rows["a0033.wav"].label == ""


@pytest.mark.django_db
def test_it_stores_the_same_audio_once_across_archives() -> None:
    audio = (SAMPLES / "a0071.wav").read_bytes()
    first, second = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(first, "w") as archive:
        archive.writestr("one.wav", audio)
        archive.writestr("again.wav", audio)
    with zipfile.ZipFile(second, "w") as archive:
        archive.writestr("other.wav", audio)

    for data in (first, second):
        ingest.ingest_batch(_stored_batch(data.getvalue()).pk, queue_analysis=False)

    keys = set(Recording.objects.values_list("storage_key", flat=True))
    assert len(keys) == 1 and Recording.objects.count() == 3
    assert storage.read_bytes(keys.pop()) == audio


def test_it_refuses_a_body_over_the_limit_before_reading_it(settings: Any) -> None:
    settings.LUBDUB_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(uploads.UploadRejected) as refused:
        uploads.check_declared_size(10**9)

    assert refused.value.status == 413 and refused.value.code == "too_large"


def test_it_reads_the_declared_size_from_the_raw_header(settings: Any) -> None:
    settings.LUBDUB_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(uploads.UploadRejected):
        uploads.check_declared_size(str(10**9))
    uploads.check_declared_size("not a number")  # left to the limit checked while streaming
    uploads.check_declared_size(None)
