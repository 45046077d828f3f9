import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from django.test import Client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.django_db
def test_it_reports_healthy_when_every_service_answers(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


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
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        settings.REDIS_URL = url  # type: ignore[attr-defined]
        assert client.get("/healthz").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"
