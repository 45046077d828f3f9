"""Where a zip member's bytes lie, read from its local header, so that a worker
can fetch them with a ranged read of the archive instead of a copy of their own."""

import hashlib
import io
import zipfile
import zlib

import pytest

from jobs import storage
from jobs.services import archive

# Not silence: a deflated member of repeated bytes would say nothing about offsets.
AUDIO = bytes((i * 7919 + i // 251) % 256 for i in range(40_000))
LOCAL_EXTRA = b"\xfe\xca\x04\x00abcd"  # a private extra field (id 0xcafe, four bytes)


def _inflated(raw: bytes, location: archive.Location) -> bytes:
    if location.compression == zipfile.ZIP_STORED:
        return raw
    assert location.compression == zipfile.ZIP_DEFLATED
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw)


def _mixed_archive() -> bytes:
    """A stored, a deflated and a deflated-with-extra-field member, in that order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("a/stored.wav", AUDIO, compress_type=zipfile.ZIP_STORED)
        zipped.writestr("a/deflated.wav", AUDIO[::-1], compress_type=zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo("a/with-extra.wav")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.extra = LOCAL_EXTRA
        zipped.writestr(info, AUDIO[1000:])
    return buffer.getvalue()


def test_it_locates_stored_and_deflated_members_and_their_bytes_match() -> None:
    data = _mixed_archive()
    expected = {"a/stored.wav": AUDIO, "a/deflated.wav": AUDIO[::-1], "a/with-extra.wav": AUDIO[1000:]}

    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        located = {
            info.filename: archive.member_location(io.BytesIO(data), info) for info in zipped.infolist()
        }

    assert [located[name].compression for name in expected] == [
        zipfile.ZIP_STORED,
        zipfile.ZIP_DEFLATED,
        zipfile.ZIP_DEFLATED,
    ]
    assert located["a/stored.wav"].length == len(AUDIO)
    assert located["a/deflated.wav"].length < len(AUDIO)
    for name, content in expected.items():
        where = located[name]
        assert _inflated(data[where.offset : where.offset + where.length], where) == content, name
    # The extra field lies between the name and the data, and is skipped.
    extra_at = located["a/with-extra.wav"].offset - len(LOCAL_EXTRA)
    assert data[extra_at : located["a/with-extra.wav"].offset] == LOCAL_EXTRA


def test_it_follows_the_local_header_when_its_extra_field_differs_from_the_central_one() -> None:
    # Written to a pipe-like stream with zip64 forced, zipfile puts a zip64 extra
    # field in the local header only and the sizes in a data descriptor after the
    # data: the central directory's extra length says nothing about the local one.
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.written = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, block: bytes) -> int:  # type: ignore[override]
            self.written += block
            return len(block)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        with zipped.open("streamed.wav", "w", force_zip64=True) as member:
            member.write(AUDIO)
    data = bytes(sink.written)

    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        info = zipped.getinfo("streamed.wav")
        where = archive.member_location(io.BytesIO(data), info)

    local_extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    assert local_extra_length != len(info.extra)
    assert info.flag_bits & 0x08  # sizes in a data descriptor, zeros in the local header
    assert _inflated(data[where.offset : where.offset + where.length], where) == AUDIO


def test_it_refuses_a_member_whose_local_header_is_corrupt() -> None:
    data = bytearray(_mixed_archive())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zipped:
        info = zipped.getinfo("a/deflated.wav")
    data[info.header_offset : info.header_offset + 4] = b"XXXX"

    with pytest.raises(zipfile.BadZipFile, match="signature"):
        archive.member_location(io.BytesIO(bytes(data)), info)


def test_it_refuses_a_member_whose_local_header_is_cut_short() -> None:
    data = _mixed_archive()
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        info = zipped.getinfo("a/with-extra.wav")

    with pytest.raises(zipfile.BadZipFile, match="truncated"):
        archive.member_location(io.BytesIO(data[: info.header_offset + 12]), info)


def test_it_reads_members_back_from_the_stored_archive_with_ranged_reads() -> None:
    data = _mixed_archive()
    key = "tests/archive-locations.zip"
    storage.put_bytes(key, data)
    try:
        with storage.open_stream(key) as stream, zipfile.ZipFile(stream) as zipped:
            wanted = {
                info.filename: (archive.member_location(stream, info), hashlib.sha256(zipped.read(info)))
                for info in zipped.infolist()
            }
        for name, (where, digest) in wanted.items():
            raw = storage.read_range(key, where.offset, where.length)
            assert hashlib.sha256(_inflated(raw, where)).hexdigest() == digest.hexdigest(), name
    finally:
        storage.delete(key)
