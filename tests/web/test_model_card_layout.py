"""A version's page in a real browser: its model card wraps to the page, on a desktop screen and
on a phone; a wide table in the card scrolls in a box of its own instead of widening the page."""

from typing import Any

import pytest

from ml.bundle import DEFAULT_SCREENING_BUNDLE
from tests.web import builders
from tests.web.conftest import log_in
from tests.web.test_mobile_layout import OVERFLOWING

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WIDE_TABLE = "| " + " | ".join(f"source {n}" for n in range(30)) + " |\n|" + "---|" * 30 + "\n"
WIDE_TABLE += "| " + " | ".join("0.781" for _ in range(30)) + " |\n"
# A fingerprint as a card writes it: one word of 200 characters with no place to break.
UNBROKEN = "sha256:" + "0123456789abcdef" * 12 + "0123456789"
CODE = "```\n" + "python -m ml train " + "--source circor2022 " * 20 + "\n```\n"


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
def test_it_wraps_the_model_card_to_the_page(
    live_server: Any, browser: Any, member: Any, viewport: dict[str, int]
) -> None:
    card = (DEFAULT_SCREENING_BUNDLE / "CARD.md").read_text()
    card += f"\n\n## Wide\n\n{WIDE_TABLE}\nTraining data {UNBROKEN}.\n\n{CODE}"
    version = builders.screening_model(version="3.0.0", model_card=card)
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, live_server.url, member.username)
        page.goto(f"{live_server.url}/models/{version.pk}/")

        assert page.locator(".model-card h2", has_text="Wide").is_visible()
        width = page.evaluate("document.documentElement.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate(OVERFLOWING) == []
        # The 30-column table keeps its columns and scrolls inside the card.
        wide = page.locator(".model-card .table-wrap").last
        assert wide.evaluate("box => box.scrollWidth > box.clientWidth")
        assert wide.locator("th").count() == 30
    finally:
        context.close()
