"""Reading a chunk's audio a group at a time while earlier groups are classified."""

import threading

import pytest

from jobs.services.analysis import Claim, fetch_in_groups


def claims(count: int) -> list[Claim]:
    return [
        Claim(analysis_id=i, recording_id=100 + i, attempts=1, storage_key=f"k{i}", sha256="")
        for i in range(count)
    ]


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

    groups = fetch_in_groups(claims(10), group=4, read=read)
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
        next(fetch_in_groups(claims(3), group=1, read=read))
