"""Ingest stores new audio in packs and refers to audio any batch already stored."""

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from jobs import storage
from jobs.models import Batch, Recording
from jobs.services import ingest, lifecycle, packs, queue
from tests.pipeline.conftest import LABELS, sample_archive, upload

NAMES = sorted(LABELS)[:6]


@pytest.fixture
def no_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest runs here, in the test; nothing is queued."""
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    monkeypatch.setattr(queue, "send_analysis", lambda batch, ids, *, chunk_size: 1)


@pytest.fixture
def writes() -> Iterator[list[str]]:
    """The keys the app's S3 client PUTs during the test."""
    sent: list[str] = []
    events = storage._s3_client().meta.events

    def record(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            sent.append(request.url.split("?")[0].split("/", 4)[-1])

    events.register("before-send.s3", record, "ingest-writes")
    yield sent
    events.unregister("before-send.s3", unique_id="ingest-writes")


def _spans(batch_id: Any) -> dict[str, packs.Span]:
    return {
        row.path: packs.span_of(row.storage_key, row.storage_offset, row.size_bytes)
        for row in Recording.objects.filter(batch_id=batch_id, status=Recording.Status.STORED)
    }


def _reads_back(batch_id: Any) -> bool:
    rows = Recording.objects.filter(batch_id=batch_id, status=Recording.Status.STORED)
    return all(
        hashlib.sha256(
            packs.read_one(packs.span_of(r.storage_key, r.storage_offset, r.size_bytes))
        ).hexdigest()
        == r.sha256
        for r in rows
    )


def test_it_packs_an_archives_new_audio_once_and_deletes_the_upload(
    default_model: Any, api: Any, no_tasks: None, writes: list[str]
) -> None:
    created = upload(api, sample_archive(NAMES, copies=2), "packed.zip")  # each recording twice
    upload_key = Batch.objects.get(pk=created["id"]).upload_key
    writes.clear()

    ingest.ingest_batch(created["id"])

    spans = _spans(created["id"])
    assert len(spans) == 12
    assert writes == [spans[NAMES[0]].key]  # one pack, one PUT, for twelve recordings
    assert len({(span.key, span.offset) for span in spans.values()}) == 6  # copies share their audio
    assert spans[f"copy1/{NAMES[3]}"] == spans[NAMES[3]]
    assert _reads_back(created["id"])
    assert not storage.exists(upload_key)


def test_it_refers_to_audio_another_batch_stored_and_keeps_it_when_that_batch_goes(
    default_model: Any, api: Any, no_tasks: None, writes: list[str]
) -> None:
    first = upload(api, sample_archive(NAMES[:4]), "first.zip")
    ingest.ingest_batch(first["id"])
    second = upload(api, sample_archive(NAMES[2:]), "second.zip")  # two already stored, two new
    writes.clear()

    ingest.ingest_batch(second["id"])

    before, after = _spans(first["id"]), _spans(second["id"])
    assert after[NAMES[2]] == before[NAMES[2]] and after[NAMES[3]] == before[NAMES[3]]
    assert after[NAMES[4]].key == after[NAMES[5]].key != before[NAMES[2]].key
    assert writes == [after[NAMES[4]].key]  # only the new audio was stored

    lifecycle.delete_batch(Batch.objects.get(pk=first["id"]))
    assert _reads_back(second["id"])
