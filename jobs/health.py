"""Liveness of the three services the platform cannot work without.

Each probe runs in a thread of its own and the answer waits for them together
at most CHECK_TIMEOUT_SECONDS: a service that accepts connections and never
answers (a paused or overloaded server) shows as `error: timeout` instead of
holding the web worker, so load balancers and people get an answer quickly.
"""

import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from jobs import storage

CHECK_TIMEOUT_SECONDS = 1.5


def _check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # The probe thread's own connection; nothing else would ever close it.
        connection.close()


def _check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()


def _check_storage() -> None:
    storage.check(timeout=CHECK_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "storage": _check_storage,
}


class _Probe(threading.Thread):
    def __init__(self, name: str, check: Callable[[], None]) -> None:
        super().__init__(name=f"healthz-{name}", daemon=True)
        self._check = check
        self.result = "error: timeout"

    def run(self) -> None:
        try:
            self._check()
            self.result = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "down", reported by name
            self.result = f"error: {type(exc).__name__}"


# A probe that is still stuck from an earlier request is not started again:
# repeated health checks against a hung service would pile up threads.
_running: dict[str, _Probe] = {}
_running_lock = threading.Lock()


def _start(name: str, check: Callable[[], None]) -> _Probe | None:
    with _running_lock:
        previous = _running.get(name)
        if previous is not None and previous.is_alive():
            return None
        probe = _running[name] = _Probe(name, check)
    probe.start()
    return probe


def run_checks(timeout: float = CHECK_TIMEOUT_SECONDS) -> dict[str, str]:
    probes = {name: _start(name, check) for name, check in CHECKS.items()}
    deadline = time.monotonic() + timeout
    results = {}
    for name, probe in probes.items():
        if probe is None:
            results[name] = "error: timeout"
            continue
        probe.join(max(0.0, deadline - time.monotonic()))
        results[name] = probe.result
    return results


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    results = run_checks()
    healthy = all(value == "ok" for value in results.values())
    failing = [name for name, value in results.items() if value != "ok"]
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": results, "failing": failing},
        status=200 if healthy else 503,
    )
