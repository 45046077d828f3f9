"""Optional Sentry reporting: with SENTRY_DSN set, the web's request errors reach
the DSN's server, without personal data; without it nothing is started."""

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


class Receiver(ThreadingHTTPServer):
    """A stand-in for Sentry's ingest endpoint that keeps every envelope posted to it."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _EnvelopeHandler)
        self.envelopes: list[tuple[str, bytes]] = []


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # the http.server protocol
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding:
            import brotli  # type: ignore[import-not-found]  # only where sentry-sdk found it

            body = brotli.decompress(body)
        self.server.envelopes.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# A web process: the project's WSGI application, with one view that raises.
WEB = textwrap.dedent(
    """
    import sys
    from wsgiref.util import setup_testing_defaults

    import sentry_sdk
    from django.conf import settings
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    from config.wsgi import application

    settings.ROOT_URLCONF = "failing_urls"
    environ = {"PATH_INFO": "/failing/", "HTTP_COOKIE": "sessionid=cookie-not-for-sentry"}
    setup_testing_defaults(environ)
    statuses = []
    b"".join(application(environ, lambda status, headers: statuses.append(status)))
    client = sentry_sdk.get_client()
    print(statuses[0], client.is_active(), client.get_integration(DjangoIntegration) is not None,
          client.get_integration(CeleryIntegration) is not None)
    sentry_sdk.flush(timeout=10)
    """
)
FAILING_URLS = textwrap.dedent(
    """
    from django.urls import path

    from config.urls import urlpatterns as project_urls


    def failing(request):
        raise RuntimeError("a view failed")


    urlpatterns = [path("failing/", failing), *project_urls]
    """
)


def _run_web(tmp_path: Path, **env: str) -> str:
    (tmp_path / "failing_urls.py").write_text(FAILING_URLS)
    script = tmp_path / "web.py"
    script.write_text(WEB)
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip().splitlines()[-1]


def _events(envelopes: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The event items of Sentry envelopes (a header line, then item header and payload lines)."""
    events = []
    for _, body in envelopes:
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


def test_it_sends_a_request_error_of_the_web_to_the_dsn(tmp_path: Path, receiver: Receiver) -> None:
    dsn = f"http://publickey@127.0.0.1:{receiver.server_port}/1"
    printed = _run_web(tmp_path, SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="staging", SENTRY_RELEASE="lubdub@1.2.3")

    assert printed == "500 Internal Server Error True True True"
    assert {path for path, _ in receiver.envelopes} == {"/api/1/envelope/"}
    (event,) = _events(receiver.envelopes)
    (error,) = event["exception"]["values"]
    assert (error["type"], error["value"]) == ("RuntimeError", "a view failed")
    assert event["request"]["url"].endswith("/failing/")
    assert (event["environment"], event["release"]) == ("staging", "lubdub@1.2.3")
    sent = b"".join(body for _, body in receiver.envelopes)
    assert b"cookie-not-for-sentry" not in sent
    assert "ip_address" not in event.get("user", {})


def test_it_starts_no_reporting_without_a_dsn(tmp_path: Path, receiver: Receiver) -> None:
    printed = _run_web(tmp_path, SENTRY_DSN="")

    assert printed == "500 Internal Server Error False False False"
    assert receiver.envelopes == []


def test_it_refuses_to_start_with_a_malformed_dsn_or_sample_rate() -> None:
    for setting, value in (("SENTRY_DSN", "not a dsn"), ("SENTRY_TRACES_SAMPLE_RATE", "2")):
        completed = subprocess.run(
            [sys.executable, "-c", "from django.conf import settings; settings.SENTRY_DSN"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", setting: value},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode != 0, setting
        assert setting in completed.stderr or "BadDsn" in completed.stderr
