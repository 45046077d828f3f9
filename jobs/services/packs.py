"""Pack objects: the audio of up to two analysis chunks of recordings in one object.

Ingest appends each new recording's bytes to a pack and writes the pack with one
PUT; a recording then lives at a span (key, offset, length). A worker reads the
spans of its chunk with one ranged GET per run of nearby spans in one object, so
a chunk of a pack costs one request instead of one per recording. A recording
stored the old way, one object per recording, is the span (its key, 0, its size)
and is read the same way. Why packs and not the upload itself: docs/storage.md.
"""

import io
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from jobs import storage

PACK_RECORDINGS = 128  # two analysis chunks, one ingest row group
PACK_BYTES = storage.SINGLE_PUT_BYTES  # a pack is written with one PUT
# Two spans of one object closer than this are read with one GET: the bytes
# between cost less than a request (and on the local S3-API server, a GET
# costs the whole object whatever its range).
MAX_GAP_BYTES = 1024 * 1024
READ_THREADS = 8


@dataclass(frozen=True)
class Span:
    """Where one recording's audio lies; length None: the whole object, from offset 0."""

    key: str
    offset: int
    length: int | None

    @property
    def end(self) -> int:
        return self.offset + (self.length or 0)


def span_of(key: str, offset: int, size_bytes: int) -> Span:
    """A recording row's span. A stored recording is never empty, so a size of 0
    is a row that does not know it (an object of its own): read it whole."""
    return Span(key, offset, size_bytes if size_bytes > 0 else None)


class Pack:
    """Recordings gathered for one pack object, in memory until written."""

    def __init__(self) -> None:
        self.key = storage.pack_key(uuid.uuid4())
        self.count = 0
        self._buffer = io.BytesIO()

    def fits(self, size: int) -> bool:
        """Room for `size` more bytes; an empty pack takes any one recording."""
        if self.count >= PACK_RECORDINGS:
            return False
        return self.count == 0 or self._buffer.tell() + size <= PACK_BYTES

    def add(self, audio: bytes) -> Span:
        span = Span(self.key, self._buffer.tell(), len(audio))
        self._buffer.write(audio)
        self.count += 1
        return span

    def write(self) -> int:
        """Store the pack (one PUT); returns its size."""
        return storage.put(self.key, self._buffer)


@dataclass(frozen=True)
class Run:
    """One read: bytes [start, end) of one object (end -1: all of it), holding the spans at `members`."""

    key: str
    start: int
    end: int
    members: tuple[int, ...]


def runs(spans: Sequence[Span], *, max_gap: int = MAX_GAP_BYTES) -> list[Run]:
    """The reads that fetch `spans`: nearby spans of one object share one; `members` index `spans`."""
    by_key: dict[str, list[int]] = {}
    found = []
    for index, span in enumerate(spans):
        if span.length is None:
            found.append(Run(span.key, 0, -1, (index,)))  # the whole object, on its own
        else:
            by_key.setdefault(span.key, []).append(index)
    for key, indexes in by_key.items():
        indexes.sort(key=lambda index: spans[index].offset)
        current = [indexes[0]]
        start, end = spans[indexes[0]].offset, spans[indexes[0]].end
        for index in indexes[1:]:
            if spans[index].offset - end > max_gap:
                found.append(Run(key, start, end, tuple(current)))
                current, start = [], spans[index].offset
            current.append(index)
            end = max(end, spans[index].end)
        found.append(Run(key, start, end, tuple(current)))
    return found


def read_run(run: Run, spans: Sequence[Span]) -> dict[int, bytes | None]:
    """The run's recordings by index; None for a recording whose bytes are not stored.

    When the whole run cannot be read (an object lost or shorter than its rows
    say), each recording is read on its own, so only the missing ones are lost.
    """
    if run.end < 0:
        return {run.members[0]: _read_alone(spans[run.members[0]])}
    try:
        data = storage.read_range(run.key, run.start, run.end - run.start)
    except FileNotFoundError:
        if len(run.members) == 1 or not storage.exists(run.key):
            return dict.fromkeys(run.members)
        return {index: _read_alone(spans[index]) for index in run.members}
    return {
        index: data[spans[index].offset - run.start : spans[index].end - run.start] for index in run.members
    }


def read_one(span: Span) -> bytes:
    """One recording's audio; FileNotFoundError when it is not stored."""
    if span.length is None:
        return storage.read_bytes(span.key)
    return storage.read_range(span.key, span.offset, span.length)


def _read_alone(span: Span) -> bytes | None:
    try:
        return read_one(span)
    except FileNotFoundError:
        return None


def read_spans(spans: Sequence[Span], *, threads: int = READ_THREADS) -> list[bytes | None]:
    """Every span's bytes (None where not stored), in the order asked, the runs read concurrently."""
    found: dict[int, bytes | None] = {}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spans") as pool:
        for part in pool.map(lambda run: read_run(run, spans), runs(spans)):
            found.update(part)
    return [found[index] for index in range(len(spans))]
