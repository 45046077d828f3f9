"""Page-number pagination that takes only what the schema says `page` is: an integer from 1.

DRF's own accepts `page=last`, an empty value, and whatever `int()` reads
(` 2`, `+2`, `1_0`, non-ASCII digits), so the schema and the server disagreed
on which requests are valid. Anything else is a 404 `invalid_page`, as a page
past the end already was.
"""

from typing import Any

from django.core.paginator import Paginator
from rest_framework import pagination
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

INVALID_PAGE = "invalid_page"


class PageNumberPagination(pagination.PageNumberPagination):
    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Paginator) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise NotFound(f"Invalid page {raw!r}: pages are numbered from 1.", code=INVALID_PAGE)
        return int(raw)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise NotFound(str(exc.detail), code=INVALID_PAGE) from exc

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
        return parameters
