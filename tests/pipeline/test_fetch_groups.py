"""Reading a chunk's audio a group at a time while earlier groups are classified."""

import threading
from collections.abc import Callable, Sequence

import pytest

from jobs import storage
from jobs.services import packs
from jobs.services.analysis import Claim, fetch_in_groups


def claims(count: int) -> list[Claim]:
    return [
        Claim(analysis_id=i, recording_id=100 + i, attempts=1, storage_key=f"k{i}", sha256="")
        for i in range(count)
    ]


def by_key(
    read: Callable[[str], bytes],
) -> Callable[[packs.Run, Sequence[packs.Span]], dict[int, bytes | None]]:
    """A run reader over `read(key)`, for claims that each have an object of their own."""

    def read_run(run: packs.Run, spans: Sequence[packs.Span]) -> dict[int, bytes | None]:
        assert len(run.members) == 1
        try:
            return {run.members[0]: read(run.key)}
        except FileNotFoundError:
            return {run.members[0]: None}

    return read_run


def test_it_hands_over_groups_in_order_while_later_reads_go_on() -> None:
    started: list[str] = []
    last_read_started = threading.Event()

    def read(key: str) -> bytes:
        started.append(key)
        if key == "k9":
            last_read_started.set()
        if key == "k4":
            raise FileNotFoundError(key)
        return key.encode()

    groups = fetch_in_groups(claims(10), group=4, read_run=by_key(read))
    fetched, missing = next(groups)
    # Every read was under way before the caller got its first group to work on.
    assert last_read_started.wait(timeout=5)
    assert [item.audio for item in fetched] == [b"k0", b"k1", b"k2", b"k3"]
    assert missing == []

    rest = list(groups)
    assert [[item.claim.storage_key for item in group] for group, _ in rest] == [
        ["k5", "k6", "k7"],
        ["k8", "k9"],
    ]
    gone = rest[0][1]
    assert [(result.claim.recording_id, result.error_code) for result in gone] == [(104, "missing_audio")]
    assert sorted(started) == sorted(f"k{i}" for i in range(10))


def test_it_passes_a_storage_failure_to_the_caller() -> None:
    def read(key: str) -> bytes:
        if key == "k0":
            raise ConnectionError("storage went away")
        return b"audio"

    with pytest.raises(ConnectionError, match="went away"):
        next(fetch_in_groups(claims(3), group=1, read_run=by_key(read)))


def test_it_reads_a_chunk_of_a_pack_with_one_request_and_legacy_objects_with_one_each() -> None:
    audio = [bytes([i]) * (1000 + i) for i in range(6)]
    pack = packs.Pack()
    spans = [pack.add(data) for data in audio[:4]]
    pack.write()
    legacy = [f"tests/fetch-legacy-{i}.bin" for i in (4, 5)]
    for key, data in zip(legacy, audio[4:], strict=True):
        storage.put_bytes(key, data)
    chunk = [
        Claim(i, 100 + i, 1, span.key, "", storage_offset=span.offset, size_bytes=span.length)
        for i, span in enumerate(spans)
    ] + [Claim(4 + i, 104 + i, 1, key, "", size_bytes=len(audio[4 + i])) for i, key in enumerate(legacy)]
    ranges: list[bytes] = []
    events = storage._s3_client().meta.events
    events.register("before-send.s3", lambda request, **_: ranges.append(request.headers["Range"]), "fetch")
    try:
        groups = list(fetch_in_groups(chunk, group=4))
    finally:
        events.unregister("before-send.s3", unique_id="fetch")
        for key in [pack.key, *legacy]:
            storage.delete(key)

    assert [[item.audio for item in fetched] for fetched, _ in groups] == [audio[:4], audio[4:]]
    assert sorted(ranges) == sorted(
        [f"bytes=0-{sum(map(len, audio[:4])) - 1}".encode(), b"bytes=0-1003", b"bytes=0-1004"]
    )
