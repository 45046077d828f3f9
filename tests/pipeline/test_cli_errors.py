"""Every failure of the lubdub console script is one line on stderr and a non-zero exit status."""

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from jobs.models import Batch
from tests import factories

LUBDUB = Path(sys.executable).with_name("lubdub")
MISSING_BATCH = "00000000-0000-0000-0000-000000000000"
TOKEN = "not-a-token"  # no server accepts it


def _lubdub(
    *args: str, url: str = "", token: str = TOKEN, cwd: Path | None = None, user: list[str] | None = None
) -> Any:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LUBDUB_")}
    env.update({"LUBDUB_URL": url, "LUBDUB_TOKEN": token})
    return subprocess.run(
        [*(user or []), str(LUBDUB), "-q", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def _one_error_line(result: Any) -> str:
    """The single line the client printed, after checking it failed and printed nothing else."""
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lubdub: error: ")
    return lines[0].removeprefix("lubdub: error: ")


@pytest.mark.parametrize(
    ("args", "url", "token", "message"),
    [
        (
            ["list"],
            "127.0.0.1:8000",
            TOKEN,
            "'127.0.0.1:8000' is not a server address: give it as http://HOST:PORT or https://HOST",
        ),
        (["list"], "ftp://127.0.0.1/", TOKEN, "'ftp://127.0.0.1/' is not a server address"),
        (["list"], "http://127.0.0.1:port", TOKEN, "'http://127.0.0.1:port' is not a server address"),
        (["list"], "", TOKEN, "no server: set LUBDUB_URL or pass --url"),
        (["list"], "http://127.0.0.1:9", "", "no token: set LUBDUB_TOKEN or pass --token"),
        (["list"], "http://127.0.0.1:9", TOKEN, "cannot reach http://127.0.0.1:9 (ConnectionError)"),
        (
            ["submit", "/no/such/recording.wav"],
            "http://127.0.0.1:9",
            TOKEN,
            "/no/such/recording.wav: no such",
        ),
        (
            ["status", "batch-7"],
            "http://127.0.0.1:9",
            TOKEN,
            "argument batch: 'batch-7' is not a batch id",
        ),
        (
            ["frobnicate"],
            "http://127.0.0.1:9",
            TOKEN,
            "argument COMMAND: invalid choice: 'frobnicate'",
        ),
        (["report"], "http://127.0.0.1:9", TOKEN, "the following arguments are required: batch"),
    ],
)
def test_it_prints_one_line_for_each_mistake_made_before_the_server_answers(
    args: list[str], url: str, token: str, message: str
) -> None:
    result = _lubdub(*args, url=url, token=token)

    assert _one_error_line(result).startswith(message)


def test_it_says_an_empty_folder_has_nothing_to_upload(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()

    result = _lubdub("submit", str(folder), url="http://127.0.0.1:9")

    assert _one_error_line(result) == "nothing to upload: the folders are empty"


def test_it_names_an_unreadable_file_to_upload() -> None:
    # Root reads every file, so as root the client runs as nobody; the folder is
    # world-traversable so that only the file itself is unreadable.
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="lubdub-unreadable-"))
    try:
        folder.chmod(0o755)
        recording = folder / "a0001.wav"
        recording.write_bytes(b"RIFF")
        recording.chmod(0)

        result = _lubdub("submit", str(recording), url="http://127.0.0.1:9", user=user)

        assert _one_error_line(result) == f"{recording}: Permission denied"
    finally:
        shutil.rmtree(folder)


class _Stub(http.server.BaseHTTPRequestHandler):
    """A server answering every request with the status, type and body its test chose."""

    answer: tuple[int, str, bytes] = (200, "text/plain", b"")

    def do_GET(self) -> None:
        status, content_type, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_it_prints_the_detail_of_a_server_error(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    detail = {"detail": "Something broke on our side.\nIt was logged.", "code": "server_error"}
    handler.answer = (500, "application/json", json.dumps(detail).encode())

    result = _lubdub("status", MISSING_BATCH, url=url)

    assert _one_error_line(result) == "server said 500: Something broke on our side. It was logged."


def test_it_says_when_the_address_is_no_lubdub_server(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.answer = (200, "text/html", b"<html><body>Welcome to nginx!</body></html>")

    result = _lubdub("list", url=url)

    assert _one_error_line(result) == f"{url} did not answer with JSON: is it a LubDub server?"


def test_it_prints_the_api_detail_of_an_unknown_batch(live_server: Any, member: Any) -> None:
    token = Token.objects.create(user=member).key

    result = _lubdub("status", MISSING_BATCH, url=live_server.url, token=token)

    assert _one_error_line(result) == "server said 404: No such batch"


@pytest.fixture
def token(member: Any) -> str:
    return Token.objects.create(user=member).key


@pytest.fixture
def batch(member: Any) -> Batch:
    organisation = member.organisations.get()
    return factories.BatchFactory(organisation=organisation, created_by=member, status=Batch.Status.COMPLETED)


@pytest.mark.parametrize("target", ["missing/folder/rows.json", "."])
def test_it_refuses_an_unwritable_output_path_in_one_line(
    live_server: Any, token: str, batch: Batch, tmp_path: Path, target: str
) -> None:
    result = _lubdub(
        "results",
        str(batch.pk),
        "--format",
        "json",
        "-o",
        target,
        url=live_server.url,
        token=token,
        cwd=tmp_path,
    )

    reason = "No such file or directory" if target != "." else "Is a directory"
    assert _one_error_line(result) == f"cannot write {target}: {reason}"
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_it_explains_why_a_running_batch_has_no_report_yet(
    live_server: Any, token: str, member: Any, tmp_path: Path
) -> None:
    running = factories.BatchFactory(organisation=member.organisations.get(), status=Batch.Status.ANALYSING)

    result = _lubdub("report", str(running.pk), url=live_server.url, token=token, cwd=tmp_path)

    message = f"batch {running.pk} is analysing: its reports are written when it finishes"
    assert _one_error_line(result) == message
    assert list(tmp_path.iterdir()) == []


def test_it_explains_that_a_finished_batch_is_already_finished_when_cancelled(
    live_server: Any, token: str, batch: Batch
) -> None:
    result = _lubdub("cancel", str(batch.pk), url=live_server.url, token=token)

    assert _one_error_line(result) == "server said 409: The batch is already completed."


def test_it_deletes_nothing_without_a_terminal_to_ask_or_yes(
    live_server: Any, token: str, batch: Batch
) -> None:
    result = _lubdub("delete", str(batch.pk), url=live_server.url, token=token)

    assert _one_error_line(result) == "not deleted: no terminal to ask; pass --yes to delete without asking"
    assert Batch.objects.filter(pk=batch.pk).exists()
