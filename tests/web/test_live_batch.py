"""The batch page while a batch runs: progress that never goes backwards, class counts so far,
the right empty message, and (in a real browser) the badge, buttons, counts and table
following the run without a reload."""

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from jobs.models import Analysis, Batch, Recording
from jobs.pages import summaries
from jobs.services.progress import batch_progress
from jobs.services.reports import write_reports
from jobs.services.results import batch_recordings
from tests import factories
from tests.web import builders
from tests.web.conftest import log_in, screenshot


def analysed(batch: Batch, path: str, *, abnormal: float, **fields: Any) -> Recording:
    recording = factories.RecordingFactory(batch=batch, path=path, duration_s=20.0)
    Analysis.objects.create(batch=batch, recording=recording, status=Analysis.Status.DONE)
    factories.PredictionFactory(recording=recording, raw_probability=abnormal, **fields)
    return recording


def waiting(batch: Batch, path: str) -> Recording:
    recording = factories.RecordingFactory(batch=batch, path=path, duration_s=20.0)
    Analysis.objects.create(batch=batch, recording=recording, status=Analysis.Status.PENDING)
    return recording


def running_batch(organisation: Any, member: Any, **fields: Any) -> Batch:
    values = {
        "organisation": organisation,
        "created_by": member,
        "model_version": builders.screening_model(),
        "name": "Morning clinic",
        "status": Batch.Status.INGESTING,
        "started_at": timezone.now(),
        **fields,
    }
    return factories.BatchFactory(**values)


@pytest.mark.django_db
def test_it_holds_the_share_at_zero_while_the_total_still_grows(organisation: Any, member: Any) -> None:
    batch = running_batch(organisation, member, total_count=40, done_count=30, pending_count=10)
    ingesting = batch_progress(batch)
    # 30 of 40 would read 75 %, and then fall as the next rows of the archive are written.
    assert ingesting.percent == 0 and ingesting.unpacking
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.ANALYSING, total_count=100, pending_count=70)
    batch.refresh_from_db()
    assert batch_progress(batch).percent == 30


@pytest.mark.django_db
def test_it_shares_progress_of_the_archives_file_count_while_it_is_still_read(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = running_batch(
        organisation, member, expected_total=100, total_count=40, done_count=30, pending_count=10
    )
    shares = []

    state = member_client.get(f"/batches/{batch.pk}/progress").json()
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    shares.append(state["percent"])
    assert (state["percent"], state["expected_total"], state["indeterminate"]) == (30, 100, False)
    assert state["counts_text"] == "40 of 100 files unpacked · 30 analysed · 30 done"
    assert 'class="progress" role="progressbar"' in body and 'aria-valuenow="30"' in body
    for status, fields in (
        # Five refused at upload: the share is of the 95 left to analyse.
        (
            Batch.Status.INGESTING,
            {"total_count": 80, "rejected_count": 5, "done_count": 45, "pending_count": 30},
        ),
        (
            Batch.Status.ANALYSING,
            {"total_count": 100, "rejected_count": 5, "done_count": 60, "pending_count": 35},
        ),
        (Batch.Status.ANALYSING, {"done_count": 95, "pending_count": 0}),
    ):
        Batch.objects.filter(pk=batch.pk).update(status=status, **fields)
        shares.append(member_client.get(f"/batches/{batch.pk}/progress").json()["percent"])
    assert shares == [30, 47, 63, 100]


@pytest.mark.django_db
def test_it_shows_a_moving_bar_until_the_file_count_is_known(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = running_batch(organisation, member, total_count=0)
    state = member_client.get(f"/batches/{batch.pk}/progress").json()
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert (state["percent"], state["expected_total"], state["indeterminate"]) == (0, None, True)
    assert 'class="progress unpacking"' in body


@pytest.mark.django_db
def test_it_counts_the_predictions_made_so_far_as_the_report_does(organisation: Any, member: Any) -> None:
    batch = running_batch(organisation, member, status=Batch.Status.ANALYSING)
    analysed(batch, "a.wav", abnormal=0.9)
    analysed(batch, "b.wav", abnormal=0.8)
    analysed(batch, "c.wav", abnormal=0.2)
    analysed(batch, "d.wav", abnormal=0.55, decision="uncertain")
    analysed(batch, "e.wav", abnormal=0.9, quality="unusable")
    waiting(batch, "f.wav")
    counts = summaries.running_counts(batch_recordings(batch))
    assert counts["by_class"] == {"abnormal": 3, "normal": 1}
    assert counts["by_decision"] == {"abnormal": 2, "normal": 1, "uncertain": 1, "re-record": 1}
    assert counts["by_quality"] == {"good": 4, "unusable": 1}


@pytest.mark.django_db
def test_it_shows_class_counts_and_rows_during_the_run(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = running_batch(organisation, member, total_count=0)
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert "No recordings yet: the upload is still being unpacked." in body
    assert "data-class-count" not in body
    assert "data-cancel" in body

    analysed(batch, "a.wav", abnormal=0.9)
    analysed(batch, "b.wav", abnormal=0.2)
    waiting(batch, "c.wav")
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.ANALYSING, total_count=3, done_count=2, pending_count=1
    )
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert "Predicted classes so far" in body
    assert 'data-class-count="abnormal">1<' in body and 'data-class-count="normal">1<' in body
    assert "No recordings yet" not in body
    assert body.split("<tbody>")[1].count("<tr>") == 3
    filtered = member_client.get(f"/batches/{batch.pk}/", {"quality": "unusable"}).content.decode()
    assert "No recordings match these filters." in filtered and "No recordings yet" not in filtered
    state = member_client.get(f"/batches/{batch.pk}/progress").json()
    assert state["percent"] == 66 and state["version"] == "analysing:3:2:False"


@pytest.mark.django_db
def test_it_says_a_finished_batch_without_recordings_has_none(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = running_batch(
        organisation,
        member,
        status=Batch.Status.FAILED,
        finished_at=timezone.now(),
        error_message="The upload is not a readable zip archive.",
    )
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    assert "This batch has no recordings: the upload could not be read" in body
    assert "still being unpacked" not in body
    assert "data-cancel" not in body


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_follows_the_run_without_reloading_in_a_browser(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = running_batch(organisation, member, total_count=0)
    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    assert page.locator("[data-status-badge]").inner_text() == "Ingesting"
    assert page.locator("[data-no-recordings]").is_visible()
    assert page.get_by_role("link", name="Cancel batch…").is_visible()
    # Set on this document: a reload would lose it.
    page.evaluate("window.sameDocument = true")

    analysed(batch, "clinic/a.wav", abnormal=0.9)
    analysed(batch, "clinic/b.wav", abnormal=0.2)
    waiting(batch, "clinic/c.wav")
    waiting(batch, "clinic/d.wav")
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.ANALYSING, total_count=4, done_count=2, pending_count=2
    )
    page.wait_for_function("document.querySelector('[data-status-badge]').textContent === 'Analysing'")
    page.wait_for_selector("table[data-recordings] >> text=clinic/d.wav")
    assert page.locator("[data-no-recordings]").count() == 0
    assert page.locator("[data-running-summary] [data-class-count=abnormal]").inner_text() == "1"
    assert page.locator("[data-percent]").inner_text() == "50 %"
    screenshot(page, "17-batch-live")

    for path in ("clinic/c.wav", "clinic/d.wav"):
        recording = batch.recordings.get(path=path)
        Analysis.objects.filter(recording=recording).update(status=Analysis.Status.DONE)
        factories.PredictionFactory(recording=recording, raw_probability=0.7)
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.COMPLETED, done_count=4, pending_count=0, finished_at=timezone.now()
    )
    write_reports(batch.pk)
    page.wait_for_selector("[data-finished=true]")
    assert page.locator("[data-status-badge]").inner_text() == "Completed"
    assert page.get_by_role("link", name="Cancel batch…").count() == 0
    assert page.get_by_role("link", name="HTML report").is_visible()
    assert page.locator("[data-class-count=abnormal]").inner_text() == "3"
    assert page.locator("[data-running-summary]").count() == 0  # the report's summary now
    assert page.locator("table[data-recordings] tbody tr").count() == 4
    assert page.locator("[data-percent]").inner_text() == "100 %"
    assert page.evaluate("window.sameDocument") is True


@pytest.mark.django_db
def test_it_counts_failed_and_rejected_files_alike_on_the_list_and_the_batch_page(
    member_client: Client, organisation: Any, member: Any
) -> None:
    batch = running_batch(
        organisation,
        member,
        status=Batch.Status.COMPLETED_WITH_ERRORS,
        finished_at=timezone.now(),
        total_count=5,
        done_count=2,
        failed_count=2,
        rejected_count=1,
    )

    listed = member_client.get("/batches/").content.decode()
    dashboard = member_client.get("/").content.decode()
    state = member_client.get(f"/batches/{batch.pk}/progress").json()
    body = member_client.get(f"/batches/{batch.pk}/").content.decode()

    for page in (listed, dashboard):
        row = page.split(f'href="/batches/{batch.pk}/"')[1].split("</tr>")[0]
        assert "<span data-failed-count>2</span> / <span data-rejected-count>1</span>" in row
    assert "Failed / rejected" in listed
    assert (state["failed"], state["rejected"]) == (2, 1)
    assert state["counts_text"].endswith("· 2 failed · 1 rejected at upload")
    assert f"<span data-counts>{state['counts_text']}</span>" in body
