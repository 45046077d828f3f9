"""The models pages: registry with drift flags, a version's page, the diff page."""

from typing import Any

from tests import factories
from tests.registry.conftest import predict


def test_it_lists_versions_and_shows_a_diff_on_the_compare_page(
    client: Any, researcher: Any, north: Any
) -> None:
    a = factories.ModelVersionFactory(version="1", is_default=True, metrics={"validation": {"accuracy": 0.8}})
    b = factories.ModelVersionFactory(version="2")
    recording = factories.RecordingFactory(
        batch=factories.BatchFactory(organisation=north, model_version=a), path="north/r1.wav"
    )
    predict(recording, a, "normal", normal=0.9, abnormal=0.1)
    predict(recording, b, "abnormal", normal=0.3, abnormal=0.7)
    client.force_login(researcher)

    listing = client.get("/models/").content.decode()
    detail = client.get(f"/models/{a.pk}/").content.decode()
    diff = client.get("/models/compare", {"a": a.pk, "b": b.pk}).content.decode()

    assert "screening-1" in listing and "screening-2" in listing and "80.0 %" in listing
    assert "Weekly drift" in detail and "Model card" in detail
    assert "north/r1.wav" in diff
    assert "0.0 %" in diff  # agreement
    assert "abnormal 70.0 %" in diff


def test_it_answers_an_unknown_version_page_with_404(client: Any, researcher: Any) -> None:
    client.force_login(researcher)
    assert client.get("/models/999999/").status_code == 404


def test_it_lets_a_researcher_make_a_version_the_default_from_its_page(client: Any, researcher: Any) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = factories.ModelVersionFactory()
    client.force_login(researcher)

    page = client.get(f"/models/{new.pk}/").content.decode()
    response = client.post(f"/models/{new.pk}/default", follow=True)

    assert "Make default" in page
    assert response.status_code == 200
    assert f"{new.slug} is now the default model." in response.content.decode()
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_default, new.is_default) == (False, True)


def test_it_forbids_an_uploader_to_retire_a_version_from_the_page(client: Any, uploader: Any) -> None:
    version = factories.ModelVersionFactory()
    client.force_login(uploader)

    page = client.get(f"/models/{version.pk}/").content.decode()
    response = client.post(f"/models/{version.pk}/retire")

    assert "Retire" not in page
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.status == "active"
