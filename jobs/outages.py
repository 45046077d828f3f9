"""A dependency outage on the API is a 503 with Retry-After, never an HTML 500.

PostgreSQL, Redis (the broker) and object storage come and go; a program
calling the API must be able to tell "try again shortly" from a bug, and
`lubdub submit` retries on exactly this answer.
"""

import logging
from collections.abc import Callable

import kombu.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from jobs import storage
from jobs.api.errors import API_PREFIX, error_json

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30

_DEPENDENCIES: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    ("database", (OperationalError, InterfaceError)),
    (
        "broker",
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError),
    ),
    ("storage", (storage.StorageUnavailable,)),
)


def unavailable_dependency(exc: BaseException) -> str | None:
    """Which dependency `exc` says is down; None for anything else (a bug stays a 500)."""
    for name, errors in _DEPENDENCIES:
        if isinstance(exc, errors):
            return name
    return None


def outage_response(dependency: str) -> JsonResponse:
    message = f"The {dependency} is unavailable; try again in {RETRY_AFTER_SECONDS} seconds."
    response = error_json(f"{dependency}_unavailable", message, 503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DependencyOutageMiddleware:
    """Turns outage errors raised by API views into `outage_response`.

    DRF hands exceptions it does not know back to Django, so this covers DRF
    and plain views alike. Pages keep Django's error page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        dependency = unavailable_dependency(exception)
        if dependency is None:
            return None
        logger.warning(
            "%s %s: %s unavailable (%s: %s)",
            request.method,
            request.path,
            dependency,
            type(exception).__name__,
            exception,
        )
        return outage_response(dependency)
