"""Fixtures for the page tests: members of organisations, and a headless browser."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.models import Membership
from tests import factories
from tests.conftest import ROOT

CHROMIUM = Path(os.environ.get("LUBDUB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def member(db: None) -> Any:
    membership = factories.MembershipFactory(
        user__username="clinician", organisation__name="North Clinic", organisation__slug="north"
    )
    return membership.user


@pytest.fixture
def organisation(member: Any) -> Any:
    return member.organisations.get()


@pytest.fixture
def outsider(db: None) -> Any:
    membership = factories.MembershipFactory(
        user__username="outsider", organisation__name="South Clinic", organisation__slug="south"
    )
    return membership.user


@pytest.fixture
def member_client(client: Any, member: Any) -> Any:
    client.force_login(member)
    return client


def join(user: Any, organisation: Any, role: str = Membership.Role.UPLOADER) -> None:
    Membership.objects.create(user=user, organisation=organisation, role=role)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run infra/browser.sh as root")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # tests make around it are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screening_model_version(transactional_db: None) -> Any:
    """The committed screening bundle, registered as the default model version."""
    from jobs.services.registry import ensure_default_model

    model_version, _ = ensure_default_model()
    return model_version
