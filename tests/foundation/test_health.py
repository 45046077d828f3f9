import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import BatchFactory, MembershipFactory
from tests.polling import poll_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.django_db
def test_it_reports_healthy_when_every_service_answers(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}
    assert response.json()["failing"] == []


@pytest.mark.django_db
def test_it_reports_503_when_redis_stops(client: Client, settings: object, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by infra/services.sh"
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        poll_until(
            lambda: redis.Redis.from_url(url).ping(),
            10,
            interval=0.05,
            ignoring=(redis.ConnectionError,),
            message="the private Redis did not answer",
        )
        settings.REDIS_URL = url  # type: ignore[attr-defined]
        assert client.get("/healthz").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_it_answers_503_naming_storage_quickly_while_storage_hangs(
    client: Client, private_s3: subprocess.Popen[bytes]
) -> None:
    membership = MembershipFactory()
    BatchFactory(organisation=membership.organisation, created_by=membership.user)
    api = APIClient()
    api.force_authenticate(membership.user)
    assert client.get("/healthz").status_code == 200

    # A paused server accepts connections and never answers, like a hung store.
    os.kill(private_s3.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        health = client.get("/healthz")
        health_seconds = time.monotonic() - started
        started = time.monotonic()
        listed = api.get("/api/v1/batches/")
        list_seconds = time.monotonic() - started
    finally:
        os.kill(private_s3.pid, signal.SIGCONT)

    assert health.status_code == 503
    assert health.json()["failing"] == ["storage"]
    assert health.json()["checks"]["storage"].startswith("error")
    assert health.json()["checks"]["database"] == "ok"
    assert health_seconds < 3
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert list_seconds < 2


@pytest.mark.django_db
def test_it_does_not_start_a_second_probe_while_one_is_stuck(monkeypatch: Any) -> None:
    from jobs import health

    release = threading.Event()
    calls: list[int] = []

    def stuck() -> None:
        calls.append(1)
        release.wait(10)

    monkeypatch.setattr(health, "CHECKS", {"storage": stuck})
    try:
        first = health.run_checks(timeout=0.1)
        second = health.run_checks(timeout=0.1)
    finally:
        release.set()

    assert first == second == {"storage": "error: timeout"}
    assert len(calls) == 1
