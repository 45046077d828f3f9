"""Ingest writes rows a group at a time: analysis starts while the archive is
still being read, and a delivery cut off half-way resumes without duplicates."""

import io
import zipfile
from typing import Any

import pytest
from django.db import OperationalError
from django.db.models import F

from jobs.models import Analysis, Batch, Recording
from jobs.services import ingest, queue
from jobs.services.progress import batch_progress
from tests import faults
from tests.conftest import SAMPLES
from tests.pipeline.conftest import LABELS, sample_archive, upload

NAMES = sorted(LABELS)[:9]  # 9 recordings: groups of 4 with a chunk size of 2


@pytest.fixture
def small_groups(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """Chunks of 2 (groups of 4 rows), no ingest task sent, analysis sends recorded."""
    settings.LUBDUB_ANALYSIS_CHUNK = 2
    monkeypatch.setattr(queue, "send_ingest", lambda batch: None)
    sent: list[tuple[str, list[int]]] = []

    def record(batch: Batch, ids: Any, *, chunk_size: int) -> int:
        status = Batch.objects.values_list("status", flat=True).get(pk=batch.pk)
        sent.append((status, list(ids)))
        return 1

    monkeypatch.setattr(queue, "send_analysis", record)
    return sent


def test_it_queues_analysis_of_the_first_groups_while_still_ingesting(
    default_model: Any, api: Any, small_groups: list[tuple[str, list[int]]]
) -> None:
    created = upload(api, sample_archive(NAMES), "groups.zip")

    ids = ingest.ingest_batch(created["id"])

    batch = Batch.objects.get(pk=created["id"])
    statuses = [status for status, _ in small_groups]
    assert statuses == [Batch.Status.INGESTING] * 2 + [Batch.Status.ANALYSING]
    assert sorted(i for _, group in small_groups for i in group) == sorted(ids)
    assert (batch.status, batch.total_count, batch.pending_count) == (Batch.Status.ANALYSING, 9, 9)
    truth = dict(Recording.objects.filter(batch=batch).values_list("path", "label"))
    assert truth == {name: LABELS[name] for name in NAMES}


def test_it_resumes_an_ingest_cut_off_after_its_first_group(
    default_model: Any, api: Any, small_groups: list[tuple[str, list[int]]]
) -> None:
    created = upload(api, sample_archive(NAMES), "resume.zip")
    with faults.second_write_cut_off(), pytest.raises(OperationalError):
        ingest.ingest_batch(created["id"])
    batch = Batch.objects.get(pk=created["id"])
    assert (batch.status, batch.total_count) == (Batch.Status.INGESTING, 4)

    resumed = ingest.ingest_batch(created["id"])  # the retry

    batch.refresh_from_db()
    paths = list(Recording.objects.filter(batch=batch).values_list("path", flat=True))
    assert sorted(paths) == NAMES  # each once
    assert len(resumed) == 5  # only what the first delivery had not written
    assert Analysis.objects.filter(batch=batch).count() == 9
    assert (batch.status, batch.total_count, batch.pending_count) == (Batch.Status.ANALYSING, 9, 9)


def test_it_stops_reading_when_the_batch_is_cancelled_mid_ingest(
    default_model: Any, api: Any, small_groups: list[tuple[str, list[int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.services.lifecycle import cancel_batch

    created = upload(api, sample_archive(NAMES), "cancel.zip")
    original = ingest._Rows.write

    def cancel_after_first(self: Any, *, final: bool = False) -> None:
        original(self, final=final)
        if len(small_groups) == 1 and not self.stopped:
            cancel_batch(Batch.objects.get(pk=created["id"]))

    monkeypatch.setattr(ingest._Rows, "write", cancel_after_first)
    ingest.ingest_batch(created["id"])

    batch = Batch.objects.get(pk=created["id"])
    assert batch.status == Batch.Status.CANCELLED
    assert Recording.objects.filter(batch=batch).count() == 4
    assert len(small_groups) == 1


def test_it_knows_the_archives_file_count_before_its_first_row_so_progress_only_grows(
    default_model: Any, api: Any, small_groups: list[tuple[str, list[int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = io.BytesIO(sample_archive(NAMES))
    with zipfile.ZipFile(data, "a") as archive:
        archive.writestr(".DS_Store", b"\0\0\0\1Bud1")  # refused at upload, but a row all the same
    created = upload(api, data.getvalue(), "counted.zip")
    original = ingest._Rows.write
    seen: list[tuple[int | None, int, int]] = []

    def write_and_analyse(self: Any, *, final: bool = False) -> None:
        before = Batch.objects.get(pk=self.batch.pk)
        seen.append((before.expected_total, before.total_count, batch_progress(before).percent))
        original(self, final=final)
        # Workers keep up: what was queued is analysed before the next group is read.
        Batch.objects.filter(pk=self.batch.pk).update(done_count=F("done_count") + F("pending_count"))
        Batch.objects.filter(pk=self.batch.pk).update(pending_count=0)

    monkeypatch.setattr(ingest._Rows, "write", write_and_analyse)
    ingest.ingest_batch(created["id"])

    batch = Batch.objects.get(pk=created["id"])
    assert (batch.expected_total, batch.total_count, batch.rejected_count) == (10, 10, 1)
    assert seen[0][:2] == (10, 0)  # the total is there before the first row
    assert all(expected == 10 for expected, _, _ in seen)
    shares = [percent for _, _, percent in seen] + [batch_progress(batch).percent]
    assert shares == sorted(shares) and shares[1] > 0  # grows from the first group on, never back
    assert shares[-1] == 100


def test_it_knows_a_single_recordings_total_before_its_row(
    default_model: Any, api: Any, small_groups: list[tuple[str, list[int]]]
) -> None:
    created = upload(api, (SAMPLES / NAMES[0]).read_bytes(), NAMES[0])
    assert Batch.objects.get(pk=created["id"]).expected_total is None

    ingest.ingest_batch(created["id"])

    batch = Batch.objects.get(pk=created["id"])
    assert (batch.expected_total, batch.total_count) == (1, 1)
