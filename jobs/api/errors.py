"""One shape for every API error: ``{"detail": <message>, "code": <token>}``.

Programs branch on `code`, people read `detail`; a refused form adds each
field's messages under `errors`. DRF's own errors (401, 404, 405, ...) are
reshaped by `exception_handler`; errors Django answers before any view runs
(an unmatched /api/ route, a bad request, a crash) by the `handler*` views,
which leave the HTML pages to Django.
"""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.services.refusals import Refused

API_PREFIX = "/api/"

ERROR = inline_serializer(
    "Error",
    {
        "detail": serializers.CharField(help_text="what went wrong, for people"),
        "code": serializers.CharField(help_text="a stable token for programs: `not_found`, `invalid`, ..."),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="`invalid` only: each refused field's messages",
        ),
    },
)


def error_body(code: str, message: str) -> dict[str, str]:
    return {"detail": message, "code": code}


def error_response(code: str, message: str, http_status: int) -> Response:
    return Response(error_body(code, message), status=http_status)


def refused(exc: Refused) -> Response:
    """A service's refusal (jobs.services.refusals) as the API's answer."""
    return error_response(exc.code, exc.message, exc.status)


def error_json(code: str, message: str, http_status: int) -> JsonResponse:
    """The error shape for answers given outside DRF (Django's handlers, the outage middleware)."""
    return JsonResponse(error_body(code, message), status=http_status)


def invalid_body(errors: Any) -> dict[str, Any]:
    """A refused form's errors as an error body whose `detail` names every field."""
    if not isinstance(errors, Mapping):
        errors = {"non_field_errors": errors if isinstance(errors, list) else [errors]}
    fields = {name: [str(message) for message in _flatten(messages)] for name, messages in errors.items()}
    detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
    return {"detail": detail or "Invalid input.", "code": "invalid", "errors": fields}


def invalid_response(errors: Any) -> Response:
    return Response(invalid_body(errors), status=400)


def _flatten(messages: Any) -> list[Any]:
    # Nested serializers and list fields give dicts and lists of messages.
    if isinstance(messages, Mapping):
        return [item for value in messages.values() for item in _flatten(value)]
    if isinstance(messages, list):
        return [item for value in messages for item in _flatten(value)]
    return [messages]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every body in the one error shape."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: an outage (jobs.outages) or a bug (a 500)
    if isinstance(exc, exceptions.ValidationError):
        response.data = invalid_body(exc.detail)
    else:
        response.data = error_body(_code(exc), str(response.data.get("detail", "")))
    return response


def _code(exc: Exception) -> str:
    if isinstance(exc, Http404):
        return "not_found"
    if isinstance(exc, PermissionDenied):
        return "permission_denied"
    detail = getattr(exc, "detail", None)
    return str(getattr(detail, "code", None) or getattr(exc, "default_code", "error"))


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return error_json("bad_request", "Bad request.", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return error_json("permission_denied", "Forbidden.", 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return error_json("not_found", "Not found.", 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_json("server_error", "Server error.", 500)
    return defaults.server_error(request)
