"""Re-analysis: who may ask, what gets selected, skipping, and scheduling."""

import datetime as dt
from typing import Any

from django.utils import timezone

from jobs.models import Analysis, Batch, Membership, Prediction, Recording
from jobs.services import reanalysis, registry
from tests import factories
from tests.registry.conftest import api_as, member, predict


def old_batch(organisation: Any, model_version: Any, count: int = 3) -> tuple[Any, list[Any]]:
    batch = factories.BatchFactory(organisation=organisation, model_version=model_version, status="completed")
    recordings = [factories.RecordingFactory(batch=batch) for _ in range(count)]
    for recording in recordings:
        predict(recording, model_version, "normal")
    return batch, recordings


def test_it_forbids_uploaders_to_request_a_reanalysis(uploader: Any, north: Any) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    batch, _ = old_batch(north, old)

    response = api_as(uploader).post(
        "/api/v1/reanalyses/", {"batches": [str(batch.pk)], "model": new.version}, format="json"
    )

    assert response.status_code == 403
    assert not Batch.objects.filter(kind=Batch.Kind.REANALYSIS).exists()


def test_it_answers_another_organisations_batch_as_unknown(researcher: Any, south: Any) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    theirs, _ = old_batch(south, old)

    response = api_as(researcher).post(
        "/api/v1/reanalyses/", {"batches": [str(theirs.pk)], "model": new.version}, format="json"
    )

    assert response.status_code == 404
    assert not Batch.objects.filter(kind=Batch.Kind.REANALYSIS).exists()


def test_it_keeps_everything_to_the_researchers_organisations(
    researcher: Any, north: Any, south: Any
) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    _, ours = old_batch(north, old, count=2)
    old_batch(south, old, count=3)

    response = api_as(researcher).post(
        "/api/v1/reanalyses/", {"all": True, "model": new.slug, "when": "at",
                                "run_at": "2030-01-01T00:00:00Z"}, format="json"
    )  # fmt: skip
    assert response.status_code == 201
    [created] = response.json()["batches"]
    reanalysis.start_reanalysis(created["id"], now=dt.datetime(2030, 1, 1, 1, tzinfo=dt.UTC))

    analysed = set(Analysis.objects.filter(batch=created["id"]).values_list("recording_id", flat=True))
    assert analysed == {recording.pk for recording in ours}


def test_it_lets_staff_reanalyse_every_organisation_in_one_batch_each(north: Any, south: Any) -> None:
    staff = factories.UserFactory(username="operator", is_staff=True)
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    old_batch(north, old, count=2)
    old_batch(south, old, count=3)

    batches = reanalysis.request_reanalysis(
        staff, selection=reanalysis.Selection(analysed_by=old.pk), model_version=new, when="at",
        run_at=timezone.now() + dt.timedelta(hours=1),
    )  # fmt: skip

    assert sorted(batch.organisation.slug for batch in batches) == ["north", "south"]
    assert {batch.status for batch in batches} == {Batch.Status.SCHEDULED}


def test_it_skips_recordings_the_version_has_already_read(researcher: Any, north: Any) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    batch, recordings = old_batch(north, old, count=3)
    for recording in recordings:
        predict(recording, new, "abnormal")

    [again] = reanalysis.request_reanalysis(
        researcher, selection=reanalysis.Selection(batches=(batch.pk,)), model_version=new
    )
    queued = reanalysis.start_reanalysis(again.pk)

    again.refresh_from_db()
    assert queued == []
    assert (again.total_count, again.skipped_count, again.pending_count) == (3, 3, 0)
    assert again.expected_total == 3
    assert again.status == Batch.Status.COMPLETED
    assert Prediction.objects.filter(model_version=new).count() == 3


def test_it_starts_a_scheduled_reanalysis_only_when_it_is_due(researcher: Any, north: Any) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    batch, _ = old_batch(north, old, count=2)
    run_at = timezone.now() + dt.timedelta(hours=2)
    [scheduled] = reanalysis.request_reanalysis(
        researcher, selection=reanalysis.Selection(batches=(batch.pk,)), model_version=new,
        when="at", run_at=run_at,
    )  # fmt: skip

    early = reanalysis.start_due_reanalyses(now=run_at - dt.timedelta(minutes=1))
    scheduled.refresh_from_db()
    assert early == [] and scheduled.status == Batch.Status.SCHEDULED

    due = reanalysis.start_due_reanalyses(now=run_at + dt.timedelta(minutes=1))
    scheduled.refresh_from_db()
    assert due == [str(scheduled.pk)]
    assert (scheduled.status, scheduled.pending_count) == (Batch.Status.ANALYSING, 2)


def test_it_waits_for_the_next_default_and_then_runs_with_it(researcher: Any, north: Any) -> None:
    current = factories.ModelVersionFactory(is_default=True)
    batch, _ = old_batch(north, current, count=2)
    [waiting] = reanalysis.request_reanalysis(
        researcher,
        selection=reanalysis.Selection(batches=(batch.pk,)),
        model_version=None,
        when="new_default",
    )
    assert reanalysis.start_due_reanalyses() == []

    newer = factories.ModelVersionFactory()
    registry.set_default(newer)
    started = reanalysis.start_due_reanalyses()

    waiting.refresh_from_db()
    assert started == [str(waiting.pk)]
    assert waiting.model_version == newer
    assert waiting.status == Batch.Status.ANALYSING


def test_it_refuses_a_retired_model(researcher: Any, north: Any) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    retired = factories.ModelVersionFactory(status="retired")
    batch, _ = old_batch(north, old)

    response = api_as(researcher).post(
        "/api/v1/reanalyses/", {"batches": [str(batch.pk)], "model": retired.slug}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_model"


def test_it_lets_an_organisation_admin_reanalyse(north: Any) -> None:
    admin = member("admin", north, Membership.Role.ADMIN)
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    batch, _ = old_batch(north, old)

    response = api_as(admin).post("/api/v1/reanalyses/", {"batches": [str(batch.pk)]}, format="json")

    assert response.status_code == 201
    [created] = response.json()["batches"]
    assert created["model_version"] == new.slug and created["kind"] == "reanalysis"


def test_it_selects_recordings_by_upload_date(researcher: Any, north: Any) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    _, recordings = old_batch(north, old, count=3)
    for recording, day in zip(recordings, (1, 10, 20), strict=True):
        Recording.objects.filter(pk=recording.pk).update(
            created_at=dt.datetime(2026, 3, day, 12, tzinfo=dt.UTC)
        )

    response = api_as(researcher).post(
        "/api/v1/reanalyses/",
        {"since": "2026-03-05", "until": "2026-03-15", "model": new.slug},
        format="json",
    )
    [created] = response.json()["batches"]
    reanalysis.start_reanalysis(created["id"])

    analysed = list(Analysis.objects.filter(batch=created["id"]).values_list("recording_id", flat=True))
    assert analysed == [recordings[1].pk]
