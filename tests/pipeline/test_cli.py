"""The lubdub console script against a live server and a real worker."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Batch
from lubdub_client.errors import CliError
from lubdub_client.main import build_parser
from lubdub_client.server import MAX_ATTEMPTS, Client
from lubdub_client.submit import submit
from tests.conftest import SAMPLES
from tests.pipeline.conftest import LABELS

LUBDUB = Path(sys.executable).with_name("lubdub")
NAMES = ["a0033.wav", "a0071.wav", "d0001.wav"]


def _lubdub(server: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUBDUB_URL": server, "LUBDUB_TOKEN": token}
    return subprocess.run([str(LUBDUB), "-q", *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "screening day"
    (root / "ward").mkdir(parents=True)
    for name in NAMES:
        shutil.copy(SAMPLES / name, root / "ward" / name)
    (root / "labels.csv").write_text("path,label\n" + "".join(f"ward/{n},{LABELS[n]}\n" for n in NAMES))
    return root


@pytest.mark.slow
def test_it_submits_a_folder_waits_and_downloads_results_matching_the_api(
    live_server: Any,
    shared_worker: Any,
    default_model: Any,
    member: Any,
    api: Any,
    folder: Path,
    tmp_path: Path,
) -> None:
    token = Token.objects.get(user=member).key

    submitted = _lubdub(live_server.url, token, "submit", str(folder), "--name", "ward round", "--wait")
    batch_id = submitted.stdout.strip()
    as_json = _lubdub(
        live_server.url, token, "results", batch_id, "--format", "json", "-o", str(tmp_path / "r.json")
    )
    as_csv = _lubdub(live_server.url, token, "results", batch_id, "--format", "csv")
    report = _lubdub(live_server.url, token, "report", batch_id, "-o", str(tmp_path / "report.html"))

    assert submitted.returncode == 0, submitted.stderr
    *_, status_line, decisions, web = submitted.stderr.splitlines()
    assert status_line.startswith(f"{batch_id} completed: 3 files, 3 done")
    counted = dict(part.rsplit(" ", 1) for part in decisions.removeprefix("decisions: ").split(", "))
    assert "uncertain" in counted and sum(map(int, counted.values())) == 3
    assert web == f"web: {live_server.url}/batches/{batch_id}/"
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.name, batch.status, batch.done_count) == ("ward round", Batch.Status.COMPLETED, 3)
    api_rows = api.get(f"/api/v1/batches/{batch_id}/recordings/").json()["results"]
    assert as_json.returncode == 0 and json.loads((tmp_path / "r.json").read_text()) == json.loads(
        json.dumps(api_rows).replace("http://testserver", live_server.url)
    )
    csv_rows = {row["path"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert {row["path"]: row["label"] for row in api_rows} == {p: r["label"] for p, r in csv_rows.items()}
    assert set(csv_rows) == {f"ward/{name}" for name in NAMES}
    assert {row["truth"] for row in api_rows} == {LABELS[name] for name in NAMES}
    assert report.returncode == 0 and "Screening report" in (tmp_path / "report.html").read_text()


def test_it_prints_one_clear_line_and_fails_without_a_server(tmp_path: Path) -> None:
    result = _lubdub("http://127.0.0.1:9", "token", "status", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "lubdub: error: cannot reach http://127.0.0.1:9 (ConnectionError)"
    ]


def test_it_reports_a_bad_token_as_one_line(live_server: Any, transactional_db: None) -> None:
    result = _lubdub(live_server.url, "not-a-token", "status", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 1
    assert result.stderr.strip() == "lubdub: error: server said 401: Invalid token."


def test_it_sends_the_site_named_with_site_in_the_upload(tmp_path: Path) -> None:
    sent: dict[str, Any] = {}

    class Recorder:
        def json(self, method: str, path: str, *, data: Any, headers: dict[str, str]) -> dict[str, str]:
            sent.update(method=method, path=path, body=b"".join(data))
            return {"id": "batch-id"}

    recording = tmp_path / "a0033.wav"
    shutil.copy(SAMPLES / "a0033.wav", recording)
    args = build_parser().parse_args(["-q", "submit", str(recording), "--site", "Ward 3"])

    assert submit(Recorder(), args) == 0  # type: ignore[arg-type]
    assert (sent["method"], sent["path"]) == ("POST", "/api/v1/batches/")
    assert b'name="site"\r\n\r\nWard 3\r\n' in sent["body"]


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    import requests

    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def _recording(tmp_path: Path) -> Path:
    recording = tmp_path / "a0033.wav"
    shutil.copy(SAMPLES / "a0033.wav", recording)
    return recording


def test_it_retries_an_upload_answered_503_with_the_same_idempotency_key(tmp_path: Path) -> None:
    answers = [
        _answer(
            503,
            {"detail": "The database is unavailable", "code": "database_unavailable"},
            {"Retry-After": "7"},
        ),
        _answer(201, {"id": "batch-id"}),
    ]
    sent: list[tuple[str, bytes]] = []
    waits: list[float] = []

    def request(method: str, url: str, *, data: Any, headers: dict[str, str], timeout: Any) -> Any:
        sent.append((headers["Idempotency-Key"], b"".join(data)))
        return answers.pop(0)

    client = Client("http://lubdub.test", "token", sleep=waits.append)
    client.session.request = request  # type: ignore[method-assign]
    args = build_parser().parse_args(["-q", "submit", str(_recording(tmp_path))])

    assert submit(client, args) == 0
    assert waits == [7.0]
    [(first_key, first_body), (retry_key, retry_body)] = sent
    assert first_key == retry_key and len(first_key) >= 32
    assert retry_body == first_body and (SAMPLES / "a0033.wav").read_bytes() in retry_body


def test_it_gives_up_after_a_bounded_number_of_503s_with_growing_waits(tmp_path: Path) -> None:
    calls: list[str] = []
    waits: list[float] = []

    def request(method: str, url: str, **_: Any) -> Any:
        calls.append(method)
        return _answer(503, {"detail": "The broker is unavailable", "code": "broker_unavailable"})

    client = Client("http://lubdub.test", "token", sleep=waits.append)
    client.session.request = request  # type: ignore[method-assign]

    with pytest.raises(CliError, match="server said 503: The broker is unavailable"):
        client.json("GET", "/api/v1/batches/x/")

    assert len(calls) == MAX_ATTEMPTS
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_it_never_repeats_a_post_without_an_idempotency_key() -> None:
    calls: list[str] = []

    def request(method: str, url: str, **_: Any) -> Any:
        calls.append(method)
        return _answer(503, {"detail": "down"})

    client = Client("http://lubdub.test", "token", sleep=lambda seconds: None)
    client.session.request = request  # type: ignore[method-assign]

    with pytest.raises(CliError):
        client.json("POST", "/api/v1/reanalyses/", json={})

    assert calls == ["POST"]
