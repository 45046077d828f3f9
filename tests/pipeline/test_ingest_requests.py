"""Ingest reads an uploaded archive with a few requests whatever its size.

The central directory from the end of the object, then one streamed read of
the members, counted on the real S3-API server with a hook on the app's own
client; the same archives ingest alike on filesystem storage.
"""

import hashlib
import io
import random
import struct
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError

from jobs import storage
from jobs.models import Batch, Recording
from jobs.services import ingest, packs, zipstream
from tests import faults
from tests.factories import BatchFactory


def _wav(seed: int, size: int) -> bytes:
    """A WAV header and `size` bytes of noise: distinct audio per seed, as ingest sniffs it."""
    body = random.Random(seed).randbytes(size)
    return b"RIFF" + struct.pack("<I", size + 4) + b"WAVE" + body


def _archive(count: int, *, size: int = 100_000, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for index in range(count):
            archive.writestr(f"site/rec{index:04d}.wav", _wav(index, size))
        archive.writestr("site/labels.csv", "path,label\nrec0000.wav,normal\n")
    return buffer.getvalue()


def _stored_batch(data: bytes, filename: str = "upload.zip") -> Batch:
    batch = BatchFactory()
    batch.upload_key = storage.upload_key(batch.pk, filename)
    batch.upload_name = filename
    batch.save()
    storage.put_bytes(batch.upload_key, data)
    return batch


def _stored(batch: Batch) -> dict[str, str]:
    rows = Recording.objects.filter(batch=batch, status=Recording.Status.STORED)
    return {row.path: row.sha256 for row in rows}


def _reads_back(batch: Batch) -> bool:
    return all(
        hashlib.sha256(
            packs.read_one(packs.span_of(r.storage_key, r.storage_offset, r.size_bytes))
        ).hexdigest()
        == r.sha256
        for r in Recording.objects.filter(batch=batch, status=Recording.Status.STORED)
    )


@pytest.fixture
def upload_reads() -> Iterator[list[tuple[str, str]]]:
    """(method, Range header) of each request the app's S3 client sends for an uploads/ key."""
    sent: list[tuple[str, str]] = []
    events = storage._s3_client().meta.events

    def record(request: Any, **_: Any) -> None:
        if "/uploads/" in request.url:
            sent.append((request.method, request.headers.get("Range", b"").decode()))

    events.register("before-send.s3", record, "ingest-upload-reads")
    yield sent
    events.unregister("before-send.s3", unique_id="ingest-upload-reads")


@pytest.mark.django_db
def test_it_reads_an_archive_with_the_same_few_requests_whatever_its_size(
    upload_reads: list[tuple[str, str]],
) -> None:
    assert storage.uses_s3()
    counts = []
    for members in (4, 200):  # 0.4 and 20 MB: one, then three 8 MiB blocks and more of reading
        batch = _stored_batch(_archive(members))
        upload_reads.clear()

        ingest.ingest_batch(batch.pk, queue_analysis=False)

        stored = _stored(batch)
        assert len(stored) == members
        assert stored["rec0001.wav"] == hashlib.sha256(_wav(1, 100_000)).hexdigest()
        assert Recording.objects.get(batch=batch, path="rec0000.wav").label == "normal"
        assert _reads_back(batch)
        gets = [ranged for method, ranged in upload_reads if method == "GET"]
        # The head (is it a zip?), the end (directory and labels.csv), one stream of the members.
        assert gets == ["bytes=0-15", f"bytes=-{zipstream.TAIL_BYTES}", "bytes=0-"]
        assert [method for method, _ in upload_reads if method != "GET"] == ["DELETE"]
        counts.append(len(upload_reads))
    assert counts[0] == counts[1] == 4


@pytest.mark.django_db
def test_a_retried_delivery_streams_from_the_first_member_not_yet_stored(
    settings: Any, upload_reads: list[tuple[str, str]]
) -> None:
    settings.LUBDUB_ANALYSIS_CHUNK = 2  # rows written four at a time
    data = _archive(9)
    batch = _stored_batch(data)
    with faults.second_write_cut_off(), pytest.raises(OperationalError):
        ingest.ingest_batch(batch.pk, queue_analysis=False)
    assert len(_stored(batch)) == 4
    upload_reads.clear()

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        fifth = zipped.getinfo("site/rec0004.wav").header_offset
    gets = [ranged for method, ranged in upload_reads if method == "GET"]
    assert gets[-1] == f"bytes={fifth}-"
    assert len(gets) == 3
    assert sorted(_stored(batch)) == [f"rec{index:04d}.wav" for index in range(9)]
    assert _reads_back(batch)


class _Unseekable(io.RawIOBase):
    """A write-only target: zipfile then writes sizes after each member (data descriptors)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.buffer.write(data)


def _awkward_archive() -> bytes:
    """Deflated members with data descriptors, labels.csv first, refusals and a large member between."""
    target = _Unseekable()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.csv", "path,label\na.wav,abnormal\nc.wav,normal\n")
        with archive.open("a.wav", "w") as member:
            member.write(_wav(1, 50_000))
        archive.writestr("notes.txt", "not audio")
        archive.writestr(".hidden.wav", _wav(2, 1000))
        archive.writestr("big.wav", _wav(3, 3_000_000), compress_type=zipfile.ZIP_STORED)
        archive.writestr("empty.wav", b"")
        with archive.open("c.wav", "w") as member:
            member.write(_wav(4, 70_000))
    return target.buffer.getvalue()


@pytest.mark.parametrize("backend", ["s3", "filesystem"])
@pytest.mark.django_db
def test_it_reads_deflated_members_refusals_and_long_gaps_in_one_pass(
    backend: str, request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "filesystem":
        request.getfixturevalue("filesystem_storage")
    settings.LUBDUB_MAX_MEMBER_BYTES = 1_000_000  # big.wav is refused by its declared size
    monkeypatch.setattr(zipstream, "SKIP_BYTES", 1_000_000)  # and jumped over, not read through
    opened: list[int] = []
    open_from = storage.open_from

    def counted(key: str, start: int, **options: Any) -> Any:
        opened.append(start)
        return open_from(key, start, **options)

    monkeypatch.setattr(storage, "open_from", counted)
    data = _awkward_archive()
    batch = _stored_batch(data)

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    rows = {r.path: r for r in Recording.objects.filter(batch=batch)}
    codes = {path: row.error_code for path, row in rows.items()}
    assert codes == {
        "a.wav": "",
        "c.wav": "",
        "notes.txt": "not_audio",
        ".hidden.wav": "hidden_file",
        "big.wav": "too_large",
        "empty.wav": "empty",
    }
    assert rows["a.wav"].sha256 == hashlib.sha256(_wav(1, 50_000)).hexdigest()
    assert rows["c.wav"].sha256 == hashlib.sha256(_wav(4, 70_000)).hexdigest()
    assert (rows["a.wav"].label, rows["c.wav"].label) == ("abnormal", "normal")
    assert _reads_back(batch)
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        assert zipped.getinfo("a.wav").flag_bits & 0x08  # sizes after the data, not in the header
        expected = [zipped.getinfo("a.wav").header_offset, zipped.getinfo("c.wav").header_offset]
    assert opened == expected  # one stream, reopened once past big.wav


@pytest.mark.django_db
def test_a_member_with_a_bad_crc_or_a_wrong_local_name_is_corrupt_and_the_rest_are_kept() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("one.wav", _wav(1, 10_000))
        archive.writestr("two.wav", _wav(2, 10_000))
        archive.writestr("three.wav", _wav(3, 10_000))
    data = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zipped:
        one = zipfile_data_offset(bytes(data), zipped.getinfo("one.wav"))
        two = zipped.getinfo("two.wav").header_offset
    data[one + 100] ^= 0xFF  # the audio changed: its CRC no longer matches
    data[two + 30 : two + 33] = b"TWO"  # the local header names another file
    batch = _stored_batch(bytes(data))

    ingest.ingest_batch(batch.pk, queue_analysis=False)

    codes = dict(Recording.objects.filter(batch=batch).values_list("path", "error_code"))
    assert codes == {"one.wav": "corrupt", "two.wav": "corrupt", "three.wav": ""}


def zipfile_data_offset(data: bytes, info: zipfile.ZipInfo) -> int:
    name_length, extra_length = struct.unpack("<2H", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length
