"""`lubdub list`, `status`, `cancel`, `delete`, `models` and `report` against a live server."""

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobs.models import Batch, ModelVersion
from jobs.services.reports import write_reports
from lubdub_client.batches import decision_counts, decisions_line, wait
from lubdub_client.main import main
from lubdub_client.server import Client
from tests import factories
from tests.conftest import SAMPLES
from tests.web import builders

LUBDUB = Path(sys.executable).with_name("lubdub")


def _lubdub(server: str, token: str, *args: str, cwd: Path | None = None) -> Any:
    env = {**os.environ, "LUBDUB_URL": server, "LUBDUB_TOKEN": token}
    return subprocess.run(
        [str(LUBDUB), "-q", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


@pytest.fixture
def token(member: Any) -> str:
    return Token.objects.create(user=member).key


@pytest.fixture
def organisation(member: Any) -> Any:
    return member.organisations.get()


def _batch(organisation: Any, *, age_minutes: int, **fields: Any) -> Batch:
    batch = factories.BatchFactory(organisation=organisation, **fields)
    # created_at is set on insert: move it back to order the batches.
    Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
    return Batch.objects.get(pk=batch.pk)


def test_it_lists_recent_batches_newest_first_with_their_counts(
    live_server: Any, token: str, organisation: Any
) -> None:
    older = _batch(
        organisation,
        age_minutes=90,
        name="ward round",
        status=Batch.Status.COMPLETED_WITH_ERRORS,
        total_count=5,
        done_count=3,
        failed_count=1,
        rejected_count=1,
    )
    newer = _batch(
        organisation,
        age_minutes=5,
        name="night shift",
        status=Batch.Status.ANALYSING,
        total_count=4,
        done_count=1,
        pending_count=3,
    )
    factories.BatchFactory(name="another program's")

    listed = _lubdub(live_server.url, token, "list")
    without_id = _lubdub(live_server.url, token, "status")
    newest = _lubdub(live_server.url, token, "list", "-n", "1")

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "ID",
        "STATUS",
        "FILES",
        "DONE",
        "FAILED",
        "REJECTED",
        "PENDING",
        "CREATED",
        "NAME",
    ]
    created = older.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
    assert [row.split()[:7] for row in rows] == [
        [str(newer.pk), "analysing", "4", "1", "0", "0", "3"],
        [str(older.pk), "completed_with_errors", "5", "3", "1", "1", "0"],
    ]
    assert rows[1].endswith(f"{created}  ward round")
    assert "another program's" not in listed.stdout
    assert without_id.returncode == 0 and without_id.stdout == listed.stdout
    assert [row.split() for row in newest.stdout.splitlines()[1:]] == [rows[0].split()]


def test_it_says_when_there_are_no_batches(live_server: Any, token: str) -> None:
    listed = _lubdub(live_server.url, token, "list")

    assert (listed.returncode, listed.stdout) == (0, "")
    assert listed.stderr.strip() == "no batches yet (lubdub submit uploads one)"


def test_it_cancels_a_running_batch(live_server: Any, token: str, organisation: Any) -> None:
    running = _batch(
        organisation, age_minutes=1, status=Batch.Status.ANALYSING, total_count=2, pending_count=2
    )

    cancelled = _lubdub(live_server.url, token, "cancel", str(running.pk))

    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{running.pk} cancelled: 2 files")
    assert Batch.objects.get(pk=running.pk).status == Batch.Status.CANCELLED


def test_it_deletes_a_batch_with_yes_without_asking(live_server: Any, token: str, organisation: Any) -> None:
    batch = _batch(organisation, age_minutes=1, name="mistake", status=Batch.Status.COMPLETED)

    deleted = _lubdub(live_server.url, token, "delete", str(batch.pk), "--yes")

    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted {batch.pk} (mistake)"
    assert not Batch.objects.filter(pk=batch.pk).exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "kept"), [("y\n", False), ("n\n", True), ("\n", True)])
def test_it_deletes_only_after_a_yes_at_the_terminal(
    live_server: Any,
    token: str,
    organisation: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    kept: bool,
) -> None:
    batch = _batch(organisation, age_minutes=1, name="week 3", status=Batch.Status.COMPLETED, total_count=7)
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))

    status = main(["--url", live_server.url, "--token", token, "delete", str(batch.pk)])

    err = capsys.readouterr().err
    assert err.startswith(
        f"Delete batch {batch.pk} (week 3, 7 files) with its results, reports and stored audio? [y/N] "
    )
    assert Batch.objects.filter(pk=batch.pk).exists() is kept
    assert status == (1 if kept else 0)
    assert err.endswith("lubdub: error: not deleted\n") is kept


def test_it_lists_the_model_versions_with_the_default_marked(live_server: Any, token: str) -> None:
    validation = {"macc": 0.781, "sensitivity": 0.72, "specificity": 0.842, "accuracy": 0.8}
    factories.ModelVersionFactory(
        name="screening",
        version="3.0.0",
        classes=["normal", "abnormal"],
        is_default=True,
        metrics={"validation": validation},
    )
    factories.ModelVersionFactory(
        name="pascal",
        version="1.0.0",
        architecture="cnn_gru",
        classes=["normal", "murmur", "extrahls"],
        metrics={"validation": {"accuracy": 0.61}},
    )
    factories.ModelVersionFactory(name="screening", version="1.0.0", status=ModelVersion.Status.RETIRED)

    listed = _lubdub(live_server.url, token, "models")
    everything = _lubdub(live_server.url, token, "models", "--all")

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["VERSION", "ARCHITECTURE", "CLASSES", "VALIDATION", "STATUS"]
    by_version = {row.split()[0]: " ".join(row.split()[1:]) for row in rows}
    assert by_version == {
        "screening-3.0.0": "gru normal, abnormal MAcc 0.78, sensitivity 0.72, specificity 0.84 "
        "active, default",
        "pascal-1.0.0": "cnn_gru normal, murmur, extrahls accuracy 0.61 active",
    }
    assert "screening-1.0.0" in everything.stdout and "retired" in everything.stdout


@pytest.fixture
def reported(organisation: Any, member: Any) -> Batch:
    batch = builders.finished_batch(
        organisation, member, files=[SAMPLES / "a0033.wav", SAMPLES / "a0071.wav"]
    )
    write_reports(batch.pk)
    return batch


def test_it_writes_the_report_to_a_default_file_and_says_where(
    live_server: Any, token: str, reported: Batch, tmp_path: Path
) -> None:
    html = _lubdub(live_server.url, token, "report", str(reported.pk), cwd=tmp_path)
    table = _lubdub(live_server.url, token, "report", str(reported.pk), "--format", "csv", cwd=tmp_path)

    assert html.returncode == 0, html.stderr
    written = tmp_path / f"report-{reported.pk}.html"
    assert "Screening report" in written.read_text()
    assert html.stderr.startswith(f"wrote report-{reported.pk}.html (") and html.stdout == ""
    rows = list(csv.DictReader((tmp_path / f"results-{reported.pk}.csv").open()))
    assert table.returncode == 0 and table.stderr.startswith(f"wrote results-{reported.pk}.csv (")
    assert sorted(row["path"] for row in rows) == ["clinic/a0033.wav", "clinic/a0071.wav"]


def test_it_downloads_the_pdf_report(live_server: Any, token: str, reported: Batch, tmp_path: Path) -> None:
    pdf = _lubdub(live_server.url, token, "report", str(reported.pk), "--format", "pdf", cwd=tmp_path)

    assert pdf.returncode == 0, pdf.stderr
    assert pdf.stderr.startswith(f"wrote report-{reported.pk}.pdf (")
    assert (tmp_path / f"report-{reported.pk}.pdf").read_bytes().startswith(b"%PDF-")


def test_it_writes_the_report_to_stdout_with_a_dash(
    live_server: Any, token: str, reported: Batch, tmp_path: Path
) -> None:
    summary = _lubdub(
        live_server.url, token, "report", str(reported.pk), "--format", "json", "-o", "-", cwd=tmp_path
    )

    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["counts"]["by_class"] == {"abnormal": 1, "normal": 1}
    assert list(tmp_path.iterdir()) == []


def test_it_counts_the_decisions_from_the_batch_detail_without_paging_its_rows(
    live_server: Any, token: str, organisation: Any
) -> None:
    batch = _batch(organisation, age_minutes=1, status=Batch.Status.COMPLETED)
    # (raw score, decision, quality): an unusable recording is re-recorded, and a
    # prediction made before decisions (none stored) counts under its label.
    made = [
        (0.8, "abnormal", "good"),
        (0.2, "normal", "good"),
        (0.3, "normal", "good"),
        (0.6, "uncertain", "good"),
        (0.9, "abnormal", "unusable"),
        (0.1, "", "good"),
    ]
    for score, decision, quality in made:
        recording = factories.RecordingFactory(batch=batch)
        factories.PredictionFactory(
            recording=recording, raw_probability=score, decision=decision, quality=quality
        )
    client = Client(live_server.url, token)
    asked: list[str] = []
    client.session.hooks["response"].append(lambda response, **_: asked.append(urlsplit(response.url).path))

    detail = wait(client, str(batch.pk), quiet=True)
    counts = decision_counts(client, detail)
    asked_with_counts = list(asked)
    # A server from before the detail's counts: the rows are paged and counted instead.
    older = {name: value for name, value in detail.items() if name != "decision_counts"}
    counted_from_rows = decision_counts(client, older)

    assert asked_with_counts == [f"/api/v1/batches/{batch.pk}/"]
    assert asked[len(asked_with_counts) :] == [f"/api/v1/batches/{batch.pk}/recordings/"]
    assert counts == counted_from_rows == Counter(abnormal=1, normal=3, uncertain=1, **{"re-record": 1})
    assert decisions_line(counts) == "abnormal 1, normal 3, uncertain 1, re-record 1"
    assert decisions_line(Counter({"normal": 3})) == "normal 3, uncertain 0"
    assert client.web_link(str(batch.pk)) == f"{live_server.url}/batches/{batch.pk}/"


@pytest.mark.slow
def test_it_ends_the_demo_with_an_export_line_for_the_client(
    live_server: Any, shared_worker: Any, default_model: Any
) -> None:
    out = io.StringIO()

    call_command("demo", url=live_server.url, stdout=out)

    command, *assignments = shlex.split(out.getvalue().splitlines()[-1])
    values = dict(assignment.split("=", 1) for assignment in assignments)
    assert command == "export" and sorted(values) == ["LUBDUB_TOKEN", "LUBDUB_URL"]
    assert values["LUBDUB_URL"] == live_server.url
    listed = _lubdub(values["LUBDUB_URL"], values["LUBDUB_TOKEN"], "list")
    assert listed.returncode == 0, listed.stderr
    assert "PhysioNet 2016 sample" in listed.stdout
