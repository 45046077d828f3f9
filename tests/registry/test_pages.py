"""The models pages: registry with drift flags, a version's page, the diff page."""

from typing import Any

from jobs.models import Batch
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


def test_it_shows_a_multi_class_versions_figures_read_as_normal_abnormal_on_the_compare_page(
    client: Any, researcher: Any, north: Any
) -> None:
    binary = factories.ModelVersionFactory(
        version="3.0.0", classes=["normal", "abnormal"], manifest={"positive_class": "abnormal"}
    )
    pascal = factories.ModelVersionFactory(
        name="pascal", version="1.0.0", classes=["normal", "murmur", "extrahls", "extrastole", "artifact"]
    )
    batch = factories.BatchFactory(organisation=north, model_version=binary)
    for index, (truth, label_binary, label_pascal) in enumerate(
        [
            ("abnormal", "abnormal", "murmur"),
            ("normal", "normal", "extrastole"),
            ("normal", "normal", "artifact"),
        ]
    ):
        recording = factories.RecordingFactory(batch=batch, path=f"north/r{index}.wav", label=truth)
        predict(recording, binary, label_binary)
        predict(recording, pascal, label_pascal)
    client.force_login(researcher)

    page = client.get("/models/compare", {"a": binary.slug, "b": pascal.slug}).content.decode()

    def row(name: str) -> list[str]:
        cells = page.split(f'<th scope="row">{name}</th>')[1].split("</tr>")[0]
        return [cell.split("</td>")[0] for cell in cells.split('<td class="num">')[1:]]

    assert "through the label map pascal-binary" in page
    assert "<li>1 recording left out: class artifact has no binary counterpart</li>" in page
    assert '<dd class="stat">50.0 %</dd>' in page  # agreement: murmur agrees with abnormal
    assert row("Recordings with truth") == ["2", "2"]
    assert row("Sensitivity") == ["100.0 %", "100.0 %"]
    assert row("Specificity") == ["100.0 %", "0.0 %"]
    assert row("MAcc") == ["100.0 %", "50.0 %"]


def test_it_answers_an_unknown_version_page_with_404(client: Any, researcher: Any) -> None:
    client.force_login(researcher)
    assert client.get("/models/999999/").status_code == 404


def test_it_lets_staff_make_a_version_the_default_from_its_page(client: Any, staff: Any) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = factories.ModelVersionFactory()
    client.force_login(staff)

    page = client.get(f"/models/{new.pk}/").content.decode()
    response = client.post(f"/models/{new.pk}/default", follow=True)

    assert "Make default" in page
    assert response.status_code == 200
    assert f"{new.slug} is now the default model." in response.content.decode()
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_default, new.is_default) == (False, True)


def test_it_forbids_a_researcher_to_change_the_default_or_retire_from_the_page(
    client: Any, researcher: Any
) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = factories.ModelVersionFactory()
    client.force_login(researcher)

    page = client.get(f"/models/{new.pk}/").content.decode()
    moved = client.post(f"/models/{new.pk}/default")
    retired = client.post(f"/models/{new.pk}/retire")

    assert "Make default" not in page and "Retire" not in page
    assert (moved.status_code, retired.status_code) == (403, 403)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_default, new.is_default, new.status) == (True, False, "active")


def test_it_forbids_an_uploader_to_retire_a_version_from_the_page(client: Any, uploader: Any) -> None:
    version = factories.ModelVersionFactory()
    client.force_login(uploader)

    page = client.get(f"/models/{version.pk}/").content.decode()
    response = client.post(f"/models/{version.pk}/retire")

    assert "Retire" not in page
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.status == "active"


def test_it_starts_a_reanalysis_of_what_another_version_read_from_the_version_page(
    client: Any, researcher: Any, north: Any
) -> None:
    old, new = factories.ModelVersionFactory(is_default=True), factories.ModelVersionFactory()
    batch = factories.BatchFactory(organisation=north, model_version=old, status="completed")
    for _ in range(2):
        predict(factories.RecordingFactory(batch=batch), old, "normal")
    client.force_login(researcher)

    page = client.get(f"/models/{new.pk}/").content.decode()
    response = client.post(
        f"/models/{new.pk}/reanalyse", {"scope": "analysed_by", "analysed_by": old.pk, "name": "second look"}
    )

    assert "Re-analyse stored recordings" in page
    created = Batch.objects.get(kind=Batch.Kind.REANALYSIS)
    assert response.status_code == 302 and response["Location"] == f"/batches/{created.pk}/"
    assert (created.name, created.model_version, created.organisation) == ("second look", new, north)
    assert created.selection["analysed_by"] == old.pk and created.selection["everything"] is False
    assert created.scheduled_for is not None


def test_it_explains_an_incomplete_or_empty_reanalysis_request_on_the_page(
    client: Any, researcher: Any, north: Any
) -> None:
    version = factories.ModelVersionFactory()
    client.force_login(researcher)

    no_dates = client.post(f"/models/{version.pk}/reanalyse", {"scope": "dates"})
    nothing_stored = client.post(f"/models/{version.pk}/reanalyse", {"scope": "all"})

    assert no_dates.status_code == 400
    assert "Give a first or a last upload date." in no_dates.content.decode()
    assert nothing_stored.status_code == 400
    assert "No stored recordings match this selection." in nothing_stored.content.decode()
    assert not Batch.objects.filter(kind=Batch.Kind.REANALYSIS).exists()


def test_it_forbids_an_uploader_to_reanalyse_from_the_page(client: Any, uploader: Any, north: Any) -> None:
    version = factories.ModelVersionFactory()
    factories.RecordingFactory(batch=factories.BatchFactory(organisation=north, model_version=version))
    client.force_login(uploader)

    page = client.get(f"/models/{version.pk}/").content.decode()
    response = client.post(f"/models/{version.pk}/reanalyse", {"scope": "all"})

    assert "Re-analyse stored recordings" not in page
    assert response.status_code == 403
    assert not Batch.objects.filter(kind=Batch.Kind.REANALYSIS).exists()


def test_it_renders_the_model_card_as_sanitised_html_and_names_the_metrics(
    client: Any, researcher: Any
) -> None:
    card = (
        "# Screening 9\n\nUse **only** as a screening aid.\n\n"
        "| source | MAcc |\n|---|---|\n| circor2022 | 0.77 |\n\n"
        "<script>alert('card')</script>\n\n[home](javascript:alert(1)) <img src=x onerror=alert(2)>\n"
    )
    version = factories.ModelVersionFactory(
        model_card=card, metrics={"validation": {"macc": 0.7821, "count": 652, "roc_auc": 0.841}}
    )
    client.force_login(researcher)

    page = client.get(f"/models/{version.pk}/").content.decode()

    assert "<h1>Screening 9</h1>" in page and "<strong>only</strong>" in page
    assert '<div class="table-wrap"><table>' in page and "<td>circor2022</td>" in page
    assert "<script>alert('card')" not in page
    assert "javascript:alert" not in page and "onerror" not in page
    assert "MAcc (mean of sensitivity and specificity)" in page and "0.782" in page
    assert '<td class="num">652</td>' in page  # a count, not 652.000


def test_it_compares_versions_named_as_in_the_api_a_page_of_changes_at_a_time(
    client: Any, researcher: Any, north: Any
) -> None:
    a = factories.ModelVersionFactory(version="2.0.0")
    b = factories.ModelVersionFactory(version="3.0.0")
    batch = factories.BatchFactory(organisation=north, model_version=a)
    for index in range(60):
        recording = factories.RecordingFactory(batch=batch, path=f"north/r{index:02}.wav")
        predict(recording, a, "normal")
        predict(recording, b, "abnormal")
    client.force_login(researcher)

    first = client.get("/models/compare", {"a": "screening-2.0.0", "b": "3.0.0"}).content.decode()
    last = client.get("/models/compare", {"a": a.slug, "b": str(b.pk), "page": 2}).content.decode()

    def shown(body: str) -> list[str]:
        rows = body.split("<table data-changes>")[1].split("</tbody>")[0]
        return [cell.split("</a>")[0].rsplit(">", 1)[1] for cell in rows.split('class="path"')[1:]]

    assert shown(first) == [f"north/r{index:02}.wav" for index in range(50)]
    assert shown(last) == [f"north/r{index:02}.wav" for index in range(50, 60)]
    assert "60 in all" in first and 'rel="next"' in first and "page=2" in first
    assert f'<option value="{a.pk}" selected>' in first and f'<option value="{b.pk}" selected>' in first
    assert "data-changes-truncated" not in first
    assert client.get("/models/compare", {"a": "screening-9.9.9", "b": b.slug}).status_code == 404


def test_it_finds_a_versions_page_by_its_name(client: Any, researcher: Any, south: Any) -> None:
    version = factories.ModelVersionFactory(version="3.0.0")
    hidden = factories.ModelVersionFactory(name="private", organisation=south, published=False)
    client.force_login(researcher)

    found = client.get("/models/screening-3.0.0/")

    assert (found.status_code, found["Location"]) == (302, f"/models/{version.pk}/")
    assert client.get(f"/models/{hidden.slug}/").status_code == 404
    assert client.get("/models/no-such-model/").status_code == 404
