"""Reviews in a real browser: a clinician overrides one result with a note and confirms
another on the recording pages, and the batch page's "Overridden" filter finds the first."""

from typing import Any

import pytest

from jobs.models import Prediction, Review
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NOTE = "Murmur heard at the apex; refer to cardiology."


def test_it_overrides_and_confirms_then_filters_the_overridden(
    live_server: Any, page: Any, member: Any, organisation: Any
) -> None:
    batch = builders.finished_batch(organisation, member, files=sorted(SAMPLES.glob("*.wav"))[:3])
    first, second, third = batch.recordings.order_by("path")
    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    page.get_by_role("link", name=first.path).click()
    model_label = page.locator("[data-predicted-label]").inner_text()
    other = "normal" if model_label == "abnormal" else "abnormal"

    page.get_by_label(f"Override with {other}").check()
    page.get_by_label("Note").fill(NOTE)
    page.get_by_role("button", name="Save and go to the next").click()
    # On to the next recording of the batch, with the review saved.
    page.wait_for_url(f"{live_server.url}/recordings/{second.pk}/*")
    assert f"Reviewed {first.path}: {other} (overridden)" in page.locator(".messages").inner_text()

    page.get_by_label("Confirm the model's result").check()
    page.get_by_role("button", name="Mark reviewed").click()
    page.wait_for_selector("[data-review-action=confirmed]")
    assert "by clinician" in page.locator("[data-latest-review]").inner_text()

    page.get_by_role("link", name="‹ Previous").click()
    assert page.locator("[data-review-action]").get_attribute("data-review-action") == "overridden"
    assert page.locator("[data-review-note]").inner_text() == NOTE
    assert f"the model said {model_label}" in page.locator("[data-latest-review]").inner_text()
    # The model's own result is kept as it was.
    assert page.locator("[data-predicted-label]").inner_text() == model_label

    page.get_by_role("link", name="Back to the batch").click()
    assert page.locator("[data-reviewed-count]").get_attribute("data-reviewed-count") == "2"
    assert page.locator("[data-overridden-count]").get_attribute("data-overridden-count") == "1"
    page.get_by_label("Review").select_option("overridden")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**review=overridden**")
    rows = page.locator("table[data-recordings] tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("a.path").inner_text() == first.path
    assert rows.first.locator("[data-row-review]").inner_text() == f"{other} overridden"
    screenshot(page, "20-overridden-filter")

    assert list(Review.objects.order_by("id").values_list("recording__path", "action", "note")) == [
        (first.path, "overridden", NOTE),
        (second.path, "confirmed", ""),
    ]
    assert Prediction.objects.get(recording=first).label == model_label
    assert not Review.objects.filter(recording=third).exists()
