"""/api/docs/ works without internet: Swagger UI is served by the app, not a CDN."""

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.web.conftest import screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_renders_the_api_docs_with_every_other_host_blocked(live_server: Any, page: Any) -> None:
    own = urlsplit(live_server.url).netloc
    blocked: list[str] = []
    failed: list[str] = []

    def only_this_server(route: Any) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def unanswered(response: Any) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    page.route("**/*", only_this_server)
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", unanswered)

    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)

    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/batches/" in [path.replace("\u200b", "") for path in paths]
    assert len(paths) > 20
    assert page.locator(".info .title").inner_text().startswith("LubDub API")
    assert blocked == [] and failed == []
    screenshot(page, "40-api-docs-offline")
