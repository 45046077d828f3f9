"""`lubdub reanalyze` and `lubdub diff` against a live server."""

from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs import cli
from jobs.models import Batch
from tests import factories
from tests.registry.conftest import predict


@pytest.fixture
def token(researcher: Any) -> str:
    return Token.objects.create(user=researcher).key


def test_it_prints_the_diff_of_two_versions(
    live_server: Any, token: str, north: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = factories.ModelVersionFactory(version="1"), factories.ModelVersionFactory(version="2")
    batch = factories.BatchFactory(organisation=north, model_version=a)
    for index, (label_a, label_b) in enumerate([("normal", "normal"), ("normal", "abnormal")]):
        recording = factories.RecordingFactory(batch=batch, path=f"r{index}.wav")
        predict(recording, a, label_a)
        predict(recording, b, label_b)

    status = cli.main(["--url", live_server.url, "--token", token, "diff", a.slug, b.slug])

    out = capsys.readouterr().out
    assert status == 0
    assert "2 recordings read by both" in out
    assert "agreement: 50.0% (1 agree, 1 changed)" in out
    assert "normal -> abnormal: 1" in out
    assert "r1.wav: normal (0.90) -> abnormal (0.90)" in out


def test_it_schedules_a_reanalysis_and_prints_its_batch(
    live_server: Any, token: str, north: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = factories.ModelVersionFactory(), factories.ModelVersionFactory(is_default=True)
    uploaded = factories.BatchFactory(organisation=north, model_version=old)
    factories.RecordingFactory(batch=uploaded)
    args = ["reanalyze", "--batch", str(uploaded.pk), "--at", "2030-01-01T08:00:00+00:00"]

    status = cli.main(["--url", live_server.url, "--token", token, *args])

    batch_id, organisation, model, when = capsys.readouterr().out.strip().split("\t")
    assert status == 0
    assert (organisation, model) == ("north", new.slug)
    scheduled = Batch.objects.get(pk=batch_id)
    assert (scheduled.kind, scheduled.status) == (Batch.Kind.REANALYSIS, Batch.Status.SCHEDULED)
    assert scheduled.scheduled_for.isoformat().startswith("2030-01-01T08:00:00")


def test_it_explains_a_refused_reanalysis_in_one_line(
    live_server: Any, uploader: Any, north: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    key = Token.objects.create(user=uploader).key
    factories.ModelVersionFactory(is_default=True)

    status = cli.main(["--url", live_server.url, "--token", key, "reanalyze", "--all"])

    assert status == 1
    assert "Only researchers and staff can request a re-analysis." in capsys.readouterr().err
