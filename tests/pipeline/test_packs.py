"""Pack objects on the real S3-API server and on filesystem storage: written with
one PUT each, a chunk's recordings read back with one ranged GET per pack."""

import hashlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import storage
from jobs.services import packs

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "physionet"


def _recordings(count: int) -> list[bytes]:
    audio = [path.read_bytes() for path in sorted(SAMPLES.glob("*.wav"))]
    # 30 kB of real audio each (128 fit in a pack), distinct per copy so that a
    # wrong slice cannot match another recording's hash.
    return [audio[i % len(audio)][:30_000] + i.to_bytes(4, "little") for i in range(count)]


@pytest.fixture
def requests_sent() -> Iterator[list[tuple[str, str]]]:
    """(method, key) of every request the app's S3 client sends during the test."""
    sent: list[tuple[str, str]] = []
    events = storage._s3_client().meta.events

    def record(request: object, **_: object) -> None:
        url = str(getattr(request, "url", ""))
        sent.append((str(getattr(request, "method", "")), url.split("/", 4)[-1].split("?")[0]))

    events.register("before-send.s3", record, "packs-test")
    yield sent
    events.unregister("before-send.s3", unique_id="packs-test")


def _packed(audio: list[bytes]) -> tuple[list[packs.Span], list[packs.Pack]]:
    spans, written, pack = [], [], packs.Pack()
    for data in audio:
        if not pack.fits(len(data)):
            written.append(pack)
            pack = packs.Pack()
        spans.append(pack.add(data))
    written.append(pack)
    for each in written:
        each.write()
    return spans, written


def _delete(keys: set[str]) -> None:
    for key in keys:
        storage.delete(key)


def test_it_fills_a_pack_up_to_its_recording_count_and_its_size() -> None:
    by_count = packs.Pack()
    for _ in range(packs.PACK_RECORDINGS):
        assert by_count.fits(10)
        by_count.add(b"x" * 10)
    assert not by_count.fits(10)

    by_size = packs.Pack()
    assert by_size.fits(packs.PACK_BYTES * 2)  # an empty pack takes any one recording
    by_size.add(b"x" * (packs.PACK_BYTES - 100))
    assert by_size.fits(100)
    assert not by_size.fits(101)


def test_it_reads_a_chunk_of_a_pack_with_one_ranged_get(requests_sent: list[tuple[str, str]]) -> None:
    audio = _recordings(130)  # 128 in the first pack, 2 in the second
    spans, written = _packed(audio)
    assert [pack.count for pack in written] == [128, 2]
    assert requests_sent == [("PUT", pack.key) for pack in written]
    requests_sent.clear()

    chunk = list(range(64, 130))  # the second half of one pack and all of the next
    read = packs.read_spans([spans[i] for i in chunk])

    assert [hashlib.sha256(data or b"").hexdigest() for data in read] == [
        hashlib.sha256(audio[i]).hexdigest() for i in chunk
    ]
    assert sorted(requests_sent) == sorted(("GET", pack.key) for pack in written)
    _delete({pack.key for pack in written})


def test_it_reads_legacy_per_recording_objects_as_whole_spans(
    requests_sent: list[tuple[str, str]],
) -> None:
    audio = _recordings(3)
    spans, written = _packed(audio[:2])
    legacy_key = storage.recording_key(hashlib.sha256(audio[2]).hexdigest())
    storage.put_bytes(legacy_key, audio[2])
    requests_sent.clear()

    read = packs.read_spans([spans[1], packs.Span(legacy_key, 0, len(audio[2])), spans[0]])

    assert read == [audio[1], audio[2], audio[0]]
    assert sorted(requests_sent) == sorted([("GET", written[0].key), ("GET", legacy_key)])
    _delete({written[0].key, legacy_key})


def test_it_splits_reads_where_spans_of_one_object_lie_far_apart() -> None:
    spans = [
        packs.Span("packs/a", 0, 100),
        packs.Span("packs/b", 0, 50),
        packs.Span("packs/a", 5_000_000, 100),
        packs.Span("packs/a", 100 + packs.MAX_GAP_BYTES, 10),  # exactly the gap allowed
        packs.Span("packs/a", 50, 100),  # overlaps the first: the same audio twice
    ]

    found = packs.runs(spans)

    assert sorted((run.key, run.start, run.end, run.members) for run in found) == [
        ("packs/a", 0, 110 + packs.MAX_GAP_BYTES, (0, 4, 3)),
        ("packs/a", 5_000_000, 5_000_100, (2,)),
        ("packs/b", 0, 50, (1,)),
    ]


def test_it_reads_what_is_left_when_a_pack_is_lost_or_cut_short() -> None:
    audio = _recordings(6)
    spans, written = _packed(audio)
    lost = packs.Span(storage.pack_key(uuid.uuid4()), 0, 10)
    cut = written[0].key
    storage.put_bytes(cut, storage.read_range(cut, 0, spans[3].offset + 7))  # ends inside the fourth

    read = packs.read_spans([*spans, lost])

    assert read == [audio[0], audio[1], audio[2], None, None, None, None]
    _delete({cut})


def test_it_reads_an_object_of_its_own_whole_when_its_row_does_not_know_the_size(
    requests_sent: list[tuple[str, str]],
) -> None:
    storage.put_bytes("tests/whole.bin", b"sized by nobody")
    requests_sent.clear()

    span = packs.span_of("tests/whole.bin", 0, 0)
    assert packs.read_spans([span, span]) == [b"sized by nobody", b"sized by nobody"]
    assert packs.read_one(span) == b"sized by nobody"
    assert requests_sent == [("GET", "tests/whole.bin")] * 3
    storage.delete("tests/whole.bin")
    with pytest.raises(FileNotFoundError):
        packs.read_one(span)


def test_it_writes_and_reads_packs_on_the_filesystem(filesystem_storage: Path) -> None:
    audio = _recordings(40)
    spans, written = _packed(audio)
    order = random.Random(3).sample(range(40), 40)

    assert packs.read_spans([spans[i] for i in order]) == [audio[i] for i in order]
    assert (filesystem_storage / written[0].key).stat().st_size == sum(len(data) for data in audio)
