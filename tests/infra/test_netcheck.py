"""Readiness checks that know whose answer they got (infra/netcheck.py)."""

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.infra.support import NETCHECK, ROOT, Listener, free_port


def netcheck(arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(NETCHECK), *arguments.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process that started but never listens: Flower failing to bind."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_a_readiness_probe_answered_by_another_process_fails(
    listener: Listener, idle_process: subprocess.Popen[bytes]
) -> None:
    started = time.monotonic()
    result = netcheck(
        f"wait --label flower --pid {idle_process.pid} --port {listener.port}"
        f" --url http://127.0.0.1:{listener.port}/ --timeout 20"
    )

    assert result.returncode == 1
    assert f"port {listener.port} is held by pid {listener.pid}" in result.stderr
    assert f"not by pid {idle_process.pid}" in result.stderr
    # It gives up once the stranger stays, not at the timeout.
    assert time.monotonic() - started < 15


def test_a_readiness_probe_answered_by_its_own_process_succeeds(listener: Listener) -> None:
    result = netcheck(
        f"wait --pid {listener.pid} --port {listener.port}"
        f" --url http://127.0.0.1:{listener.port}/ --timeout 20"
    )

    assert result.returncode == 0, result.stderr


def test_a_readiness_probe_fails_at_once_when_its_process_exits() -> None:
    process = subprocess.Popen(["true"])
    process.wait()

    result = netcheck(f"wait --label web --pid {process.pid} --port {free_port()} --timeout 20")

    assert result.returncode == 1
    assert f"web: pid {process.pid} exited" in result.stderr


def test_a_taken_port_is_replaced_and_the_change_said(listener: Listener) -> None:
    result = netcheck(f"pick --label flower {listener.port}")

    port = int(result.stdout)
    assert port != listener.port
    assert netcheck(f"free {port}").returncode == 0
    assert f"flower: port {listener.port} is taken by pid {listener.pid}" in result.stderr
    assert f"using {port}" in result.stderr


def test_a_free_port_is_kept_and_nothing_said() -> None:
    port = free_port()

    result = netcheck(f"pick --label web {port}")

    assert result.stdout.strip() == str(port)
    assert result.stderr == ""
