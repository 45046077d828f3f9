"""`lubdub reanalyze` and `lubdub diff` against a live server."""

from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Batch
from lubdub_client.main import main
from lubdub_client.reanalysis import format_diff
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

    status = main(["--url", live_server.url, "--token", token, "diff", a.slug, b.slug])

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

    status = main(["--url", live_server.url, "--token", token, *args])

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

    status = main(["--url", live_server.url, "--token", key, "reanalyze", "--all"])

    assert status == 1
    assert "Only researchers and staff can request a re-analysis." in capsys.readouterr().err


def test_it_prints_the_diff_of_a_binary_and_a_multi_class_version(
    live_server: Any, token: str, north: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = factories.ModelVersionFactory(
        name="screening", classes=["normal", "abnormal"], manifest={"positive_class": "abnormal"}
    )
    multi = factories.ModelVersionFactory(
        name="pascal", classes=["normal", "murmur", "extrahls", "extrastole", "artifact"]
    )
    batch = factories.BatchFactory(organisation=north, model_version=binary)
    # (truth, binary label, PASCAL label): r3's truth is a PASCAL label; r4 reads as artifact.
    cases = [
        ("abnormal", "abnormal", "murmur"),
        ("normal", "normal", "normal"),
        ("normal", "abnormal", "extrastole"),
        ("murmur", "normal", "extrahls"),
        ("normal", "normal", "artifact"),
    ]
    for index, (truth, label_a, label_b) in enumerate(cases):
        recording = factories.RecordingFactory(batch=batch, path=f"r{index}.wav", label=truth)
        predict(recording, binary, label_a)
        predict(recording, multi, label_b)

    status = main(["--url", live_server.url, "--token", token, "diff", binary.slug, multi.slug])

    captured = capsys.readouterr()
    assert (status, captured.err) == (0, "")
    # Four counted in normal/abnormal; truth abnormal, normal, normal, abnormal (murmur).
    assert captured.out.splitlines() == [
        f"{binary.slug} -> {multi.slug}: 5 recordings read by both",
        f"{multi.slug} labels read as normal/abnormal (label map pascal-binary)",
        "1 recording left out: class artifact has no binary counterpart",
        "agreement: 75.0% (3 agree, 1 changed)",
        "  normal -> abnormal: 1",
        "against ground truth (4 recordings):",
        "  accuracy: 50.0% -> 75.0%",
        "  sensitivity: 50.0% -> 100.0%",
        "  specificity: 50.0% -> 50.0%",
        "  MAcc: 50.0% -> 75.0%",
        "  r3.wav: normal (0.90) -> extrahls (0.90)",
    ]


def test_it_formats_a_diff_whose_versions_share_no_figure() -> None:
    found = {
        "version_a": "pascal-1.0.0", "version_b": "screening-3.0.0", "compared": 1, "agreed": 0, "changed": 1,
        "agreement_rate": 0.0, "flips": [{"from": "murmur", "to": "abnormal", "count": 1}],
        "metrics": {"a": {"count": 1, "accuracy": 0.0},
                    "b": {"count": 1, "accuracy": 1.0, "sensitivity": 1.0}},
        "changes": [{"path": "r.wav", "label_a": "murmur", "label_b": "abnormal", "probabilities_a": {},
                     "probabilities_b": None}],
    }  # fmt: skip

    lines = format_diff(found).splitlines()

    assert "  accuracy: 0.0% -> 100.0%" in lines
    assert "  sensitivity: n/a -> 100.0%" in lines
    assert "  r.wav: murmur (?) -> abnormal (?)" in lines
