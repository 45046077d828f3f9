"""Reading an uploaded zip with a few object-store requests, whatever its size.

The central directory comes from the end of the object: one ranged read of its
last TAIL_BYTES (the end-of-central-directory record, the zip64 locator and
record, and the directory itself unless it is larger), and one more ranged read
when the directory starts before them. zipfile parses what those reads hold,
so the checks made on the directory (archive.plan) are zipfile's and ours as
before.

The members' bytes come from one streamed read of the body (`storage.open_from`),
read forward only: members are taken in the order they lie in the archive, each
member's local header is parsed from the stream and its data handed to
zipfile's own member reader (inflating, stopping at the declared size, checking
the CRC) as `ZipFile.open` would. A read can start at any member (a resumed
ingest starts at the first member not yet done), and a long run of members not
wanted (more than SKIP_BYTES) is jumped over with a new ranged read instead of
being read through.
"""

import zipfile
from typing import IO, Any, cast

from jobs import storage
from jobs.services.archive import LOCAL_HEADER, LOCAL_SIGNATURE

TAIL_BYTES = 1024 * 1024
STREAM_BUFFER = 256 * 1024
SKIP_BYTES = 8 * 1024 * 1024  # read through gaps up to this; reopen the stream past longer ones
_FIELD_MAX = 0xFFFF  # a local header's name and extra field are each at most this long
_COMPRESSED_PATCH = 0x20
_STRONG_ENCRYPTION = 0x40
_UTF8_NAME = 0x800


class _Sparse(storage.SeekableReader):
    """The object as zipfile sees it: its size and the ranges read so far.

    A read outside those ranges is one ranged read of what it asks for. A
    storage failure is kept in `failure` as well as raised: zipfile turns some
    OSErrors into BadZipFile, and the caller re-raises the original.
    """

    def __init__(self, key: str, size: int, start: int, data: bytes) -> None:
        super().__init__(size)
        self._key = key
        self._ranges: list[tuple[int, bytes]] = [(start, data)]
        self.failure: Exception | None = None

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        data = self._held(self._position, wanted)
        if data is None:
            self.load(self._position, wanted)
            data = self._held(self._position, wanted)
            assert data is not None
        buffer[:wanted] = data
        self._position += wanted
        return wanted

    def load(self, start: int, length: int) -> None:
        """Read [start, start + length) (clipped to the object) with one ranged read, unless held."""
        length = min(length, self.size - start)
        if length <= 0 or self._held(start, length) is not None:
            return
        try:
            self._ranges.append((start, storage.read_range(self._key, start, length)))
        except Exception as exc:
            self.failure = exc
            raise

    def _held(self, start: int, length: int) -> bytes | None:
        for first, data in self._ranges:
            if first <= start and start + length <= first + len(data):
                return data[start - first : start - first + length]
        return None


class Directory:
    """An archive's central directory, read from the end of the object."""

    def __init__(self, key: str) -> None:
        """Raises zipfile.BadZipFile (and what zipfile raises) when there is no readable directory."""
        tail, size = storage.read_tail(key, TAIL_BYTES)
        self.size = size
        self._view = _Sparse(key, size, size - len(tail), tail)
        try:
            self.zipped = zipfile.ZipFile(self._view)
        except Exception:
            if self._view.failure is not None:
                raise self._view.failure from None
            raise

    def __enter__(self) -> "Directory":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.zipped.close()

    def read(self, info: zipfile.ZipInfo, *, limit: int) -> bytes:
        """One small member's data (labels.csv), its local header and data fetched with one ranged read."""
        self._view.load(
            info.header_offset, LOCAL_HEADER.size + 2 * _FIELD_MAX + min(info.compress_size, limit)
        )
        try:
            return self.zipped.read(info)
        except Exception:
            if self._view.failure is not None:
                raise self._view.failure from None
            raise


class Body:
    """One forward-only read of an archive's members (see the module's docstring)."""

    def __init__(self, key: str, size: int) -> None:
        self._key = key
        self._size = size
        self._stream: IO[bytes] | None = None
        self._position = 0  # of the stream in the object
        self.data_offset = 0  # where the data of the member opened last starts

    def __enter__(self) -> "Body":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def open(self, info: zipfile.ZipInfo) -> IO[bytes]:
        """The member's data as ZipFile.open gives it; call in ascending header_offset order.

        Raises zipfile.BadZipFile (a bad or truncated local header, a member
        overlapping the one read before it), NotImplementedError (a method or
        flag zipfile cannot read); the returned reader raises what zipfile's
        does (a bad CRC, a truncated member, zlib errors).
        """
        if info.header_offset + LOCAL_HEADER.size > self._size:
            raise zipfile.BadZipFile(f"truncated local header for {info.filename!r}")
        self._seek(info.header_offset)
        fields = LOCAL_HEADER.unpack(self._exactly(LOCAL_HEADER.size, info))
        if fields[0] != LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"bad local header signature for {info.filename!r}")
        flags, name_length, extra_length = fields[3], fields[10], fields[11]
        name = self._exactly(name_length, info)
        self._skip(extra_length)
        self.data_offset = self._position
        if info.flag_bits & _COMPRESSED_PATCH:
            raise NotImplementedError("compressed patched data (flag bit 5)")
        if info.flag_bits & _STRONG_ENCRYPTION:
            raise NotImplementedError("strong encryption (flag bit 6)")
        local_name = name.decode("utf-8" if flags & _UTF8_NAME else "cp437")
        if local_name != info.orig_filename:
            raise zipfile.BadZipFile(
                f"File name in directory {info.orig_filename!r} and header {name!r} differ."
            )
        return cast(IO[bytes], zipfile.ZipExtFile(self, "r", info, None, False))

    # What ZipExtFile asks of the file it reads.
    def seekable(self) -> bool:
        return False

    def read(self, length: int = -1) -> bytes:
        assert self._stream is not None
        data = self._stream.read(length)
        self._position += len(data)
        return data

    def _seek(self, offset: int) -> None:
        if offset < self._position:
            raise zipfile.BadZipFile("the member overlaps the member before it in the archive")
        if self._stream is None or offset - self._position > SKIP_BYTES:
            self.close()
            self._stream = storage.open_from(self._key, offset, buffer_size=STREAM_BUFFER)
            self._position = offset
        self._skip(offset - self._position)

    def _skip(self, length: int) -> None:
        while length > 0:
            data = self.read(min(length, STREAM_BUFFER))
            if not data:
                return  # the next read finds the end
            length -= len(data)

    def _exactly(self, length: int, info: zipfile.ZipInfo) -> bytes:
        data = self.read(length)
        if len(data) != length:
            raise zipfile.BadZipFile(f"truncated local header for {info.filename!r}")
        return data
