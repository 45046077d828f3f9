"""The registry between organisations: per-organisation defaults, and unpublished versions.

Roles: staff, a researcher, an admin and an uploader of North, and a
researcher of South. North's own default reads North's new uploads while
South keeps the global one; a version a North researcher registers is North's
alone (404 and `unknown_model` elsewhere) until staff publish it.
"""

import io
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from jobs.models import Batch, Membership, ModelVersion, Organisation
from jobs.services import reanalysis, registry
from ml.bundle import pack_bundle
from tests import factories
from tests.conftest import SAMPLES
from tests.faults import InBackground, blocked_by, rival_session
from tests.registry.conftest import api_as, copy_bundle, member, predict


@pytest.fixture
def people(north: Any, south: Any, staff: Any, researcher: Any, uploader: Any) -> dict[str, Any]:
    return {
        "staff": staff,
        "north researcher": researcher,
        "north admin": member("north-admin", north, Membership.Role.ADMIN),
        "north uploader": uploader,
        "south researcher": member("south-researcher", south, Membership.Role.RESEARCHER),
    }


@pytest.fixture
def global_default(db: None) -> ModelVersion:
    return factories.ModelVersionFactory(version="1.0", is_default=True)


@pytest.fixture
def north_only(north: Any, researcher: Any) -> ModelVersion:
    """A version a North researcher registered: active, unpublished."""
    return factories.ModelVersionFactory(
        version="7.0-north", organisation=north, published=False, registered_by=researcher
    )


def recording_file(name: str = "a0033.wav") -> io.BytesIO:
    handle = io.BytesIO((SAMPLES / name).read_bytes())
    handle.name = name
    return handle


def upload(user: Any, **fields: Any) -> Any:
    return api_as(user).post("/api/v1/batches/", {"file": recording_file(), **fields}, format="multipart")


# --- who may choose an organisation's default -----------------------------------------

# What each role gets when choosing North's default: South's researcher is no member (404).
CHOOSING = {
    "staff": 200,
    "north researcher": 200,
    "north admin": 200,
    "north uploader": 403,
    "south researcher": 404,
}


@pytest.mark.parametrize(("role", "expected"), CHOOSING.items())
def test_it_lets_only_staff_and_the_organisations_researchers_and_admins_choose_its_default(
    people: dict[str, Any], north: Any, global_default: Any, role: str, expected: int
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")

    response = api_as(people[role]).post(
        f"/api/v1/models/{chosen.pk}/default/", {"organisation": "north"}, format="json"
    )

    assert response.status_code == expected, response.content
    north.refresh_from_db()
    assert (north.default_model_id == chosen.pk) is (expected == 200)
    global_default.refresh_from_db()
    assert global_default.is_default is True  # the global default never moves this way
    if expected == 200:
        assert response.json()["default_for"] == ["north"]
    else:
        assert response.json()["code"] in ("forbidden", "not_found")


@pytest.mark.parametrize(("role", "expected"), CHOOSING.items())
def test_it_lets_only_staff_and_the_organisations_researchers_and_admins_clear_its_default(
    people: dict[str, Any], north: Any, global_default: Any, role: str, expected: int
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    north.default_model = chosen
    north.save()

    response = api_as(people[role]).delete(f"/api/v1/models/{chosen.pk}/default/?organisation=north")

    assert response.status_code == expected, response.content
    north.refresh_from_db()
    assert (north.default_model_id is None) is (expected == 200)


def test_it_tells_a_researcher_to_name_the_organisation_for_a_default_of_their_own(
    people: dict[str, Any], global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")

    response = api_as(people["north researcher"]).post(f"/api/v1/models/{chosen.pk}/default/")

    assert response.status_code == 403
    assert response.json()["code"] == "staff_only"
    assert '"organisation"' in response.json()["detail"]
    chosen.refresh_from_db()
    assert chosen.is_default is False


def test_it_refuses_to_clear_a_default_the_organisation_does_not_have(
    people: dict[str, Any], global_default: Any
) -> None:
    response = api_as(people["north researcher"]).delete(
        f"/api/v1/models/{global_default.pk}/default/?organisation=north"
    )
    missing = api_as(people["north researcher"]).delete(f"/api/v1/models/{global_default.pk}/default/")

    assert response.status_code == 409 and response.json()["code"] == "not_the_default"
    assert missing.status_code == 400


def test_it_offers_only_active_versions_as_an_organisations_default(
    people: dict[str, Any], north: Any, global_default: Any
) -> None:
    retired = factories.ModelVersionFactory(version="0.9", status="retired")

    response = api_as(people["north admin"]).post(
        f"/api/v1/models/{retired.pk}/default/", {"organisation": "north"}, format="json"
    )

    assert response.status_code == 409 and response.json()["code"] == "not_active"
    north.refresh_from_db()
    assert north.default_model_id is None


# --- which version reads an organisation's uploads ------------------------------------


def test_it_reads_an_organisations_uploads_with_its_own_default_and_others_with_the_global_one(
    people: dict[str, Any], north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)

    from_north = upload(people["north uploader"])
    from_south = upload(people["south researcher"])
    named = upload(people["north uploader"], model=global_default.slug)

    assert from_north.status_code == 201, from_north.content
    assert from_north.json()["model_version"] == chosen.slug
    assert from_south.json()["model_version"] == global_default.slug
    assert named.json()["model_version"] == global_default.slug


def test_it_falls_back_to_the_global_default_when_the_organisation_clears_its_own(
    people: dict[str, Any], north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)
    registry.clear_organisation_default(chosen, north)

    response = upload(people["north uploader"])

    assert response.json()["model_version"] == global_default.slug


def test_it_offers_the_organisations_default_first_on_the_upload_page(
    client: Any, people: dict[str, Any], north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)
    client.force_login(people["north uploader"])

    page = client.get("/upload/").content.decode()

    assert f'<option value="{chosen.pk}" selected>{chosen.slug} (gru) · default</option>' in page
    assert f"{global_default.slug} (gru)</option>" in page


def test_it_reanalyses_each_organisation_with_its_own_default(
    staff: Any, north: Any, south: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)
    for organisation in (north, south):
        batch = factories.BatchFactory(organisation=organisation, model_version=global_default)
        predict(factories.RecordingFactory(batch=batch), global_default, "normal")

    response = api_as(staff).post("/api/v1/reanalyses/", {"all": True}, format="json")

    assert response.status_code == 201, response.content
    read_with = {row["organisation"]: row["model_version"] for row in response.json()["batches"]}
    assert read_with == {"north": chosen.slug, "south": global_default.slug}


def test_it_starts_a_waiting_reanalysis_with_its_organisations_next_default(
    staff: Any, north: Any, south: Any, global_default: Any
) -> None:
    for organisation in (north, south):
        batch = factories.BatchFactory(organisation=organisation, model_version=global_default)
        factories.RecordingFactory(batch=batch)
    waiting = {
        batch.organisation.slug: batch
        for batch in reanalysis.request_reanalysis(
            staff, selection=reanalysis.Selection(everything=True), model_version=None, when="new_default"
        )
    }

    north_choice = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(north_choice, north)
    waiting["north"].refresh_from_db()
    waiting["south"].refresh_from_db()
    assert waiting["north"].model_version == north_choice and waiting["north"].scheduled_for is not None
    assert waiting["south"].scheduled_for is None  # South has no new default yet

    new_global = factories.ModelVersionFactory(version="3.0")
    registry.set_default(new_global)
    waiting["north"].refresh_from_db()
    waiting["south"].refresh_from_db()
    assert waiting["south"].model_version == new_global
    assert waiting["north"].model_version == north_choice  # North keeps its own


def test_it_refuses_to_retire_a_version_an_organisation_uses_as_its_default(
    staff: Any, north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)

    response = api_as(staff).post(f"/api/v1/models/{chosen.pk}/retire/")

    assert response.status_code == 409
    assert response.json()["code"] == "is_organisation_default"
    assert "North Clinic" in response.json()["detail"]
    assert "choose another default" in response.json()["detail"]
    chosen.refresh_from_db()
    assert chosen.status == "active"


@pytest.mark.django_db(transaction=True)
def test_retiring_while_a_default_is_being_chosen_waits_for_it_and_then_refuses(north: Any) -> None:
    # A rival session does what choosing a default does (lock the version, point the
    # organisation at it) and holds its transaction open while staff retire the version.
    chosen = factories.ModelVersionFactory(version="2.0")
    with rival_session() as rival:
        with rival.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {ModelVersion._meta.db_table} WHERE id = %s FOR UPDATE",  # noqa: S608
                [chosen.pk],
            )
            cursor.execute(
                f"UPDATE {Organisation._meta.db_table} SET default_model_id = %s WHERE id = %s",  # noqa: S608
                [chosen.pk, north.pk],
            )
        retiring = InBackground(lambda: _retire_in_own_connection(chosen))
        retiring.start()
        blocked_by(rival)
        rival.commit()
        with pytest.raises(registry.RegistrationRefused) as refused:
            retiring.result()

    assert refused.value.code == "is_organisation_default"
    chosen.refresh_from_db()
    assert chosen.status == "active"


@pytest.mark.django_db(transaction=True)
def test_choosing_a_default_while_the_version_is_retired_waits_for_it_and_then_refuses(north: Any) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    with rival_session() as rival:
        with rival.cursor() as cursor:
            cursor.execute(
                f"UPDATE {ModelVersion._meta.db_table} SET status = 'retired' WHERE id = %s",  # noqa: S608
                [chosen.pk],
            )
        choosing = InBackground(lambda: _choose_in_own_connection(chosen, north))
        choosing.start()
        blocked_by(rival)
        rival.commit()
        with pytest.raises(registry.RegistrationRefused) as refused:
            choosing.result()

    assert refused.value.code == "not_active"
    north.refresh_from_db()
    assert north.default_model is None


def _retire_in_own_connection(version: ModelVersion) -> ModelVersion:
    try:
        return registry.retire(version)
    finally:
        connection.close()


def _choose_in_own_connection(version: ModelVersion, organisation: Any) -> ModelVersion:
    try:
        return registry.set_organisation_default(version, organisation)
    finally:
        connection.close()


def test_it_lists_which_of_the_callers_organisations_use_a_version_as_default(
    people: dict[str, Any], north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    registry.set_organisation_default(chosen, north)

    def default_for(role: str) -> dict[str, list[str]]:
        rows = api_as(people[role]).get("/api/v1/models/").json()
        return {row["slug"]: row["default_for"] for row in rows}

    assert default_for("north uploader") == {chosen.slug: ["north"], global_default.slug: []}
    assert default_for("south researcher") == {chosen.slug: [], global_default.slug: []}
    assert default_for("staff")[chosen.slug] == ["north"]


# --- a researcher's registration is North's until staff publish it ---------------------


def test_it_registers_a_researchers_bundle_unpublished_for_their_organisation(
    people: dict[str, Any], tmp_path: Path
) -> None:
    packed = tmp_path / "bundle.zip"
    with packed.open("wb") as sink:
        pack_bundle(copy_bundle(tmp_path, version="97.0.0"), sink)

    with packed.open("rb") as bundle:
        response = api_as(people["north researcher"]).post(
            "/api/v1/models/", {"bundle": bundle}, format="multipart"
        )

    assert response.status_code == 202, response.content
    assert (response.json()["organisation"], response.json()["published"]) == ("north", False)
    version = ModelVersion.objects.get(version="97.0.0")
    assert (version.organisation.slug, version.published) == ("north", False)


def test_it_publishes_what_staff_register(staff: Any, tmp_path: Path) -> None:
    packed = tmp_path / "bundle.zip"
    with packed.open("wb") as sink:
        pack_bundle(copy_bundle(tmp_path, version="96.0.0"), sink)

    with packed.open("rb") as bundle:
        response = api_as(staff).post("/api/v1/models/", {"bundle": bundle}, format="multipart")

    assert response.status_code == 202, response.content
    assert (response.json()["organisation"], response.json()["published"]) == (None, True)


def test_it_asks_a_researcher_of_several_organisations_which_one_registers(
    researcher: Any, south: Any, tmp_path: Path
) -> None:
    factories.MembershipFactory(user=researcher, organisation=south, role=Membership.Role.RESEARCHER)
    packed = tmp_path / "bundle.zip"
    with packed.open("wb") as sink:
        pack_bundle(copy_bundle(tmp_path, version="95.0.0"), sink)

    with packed.open("rb") as bundle:
        ambiguous = api_as(researcher).post("/api/v1/models/", {"bundle": bundle}, format="multipart")
    with packed.open("rb") as bundle:
        named = api_as(researcher).post(
            "/api/v1/models/", {"bundle": bundle, "organisation": "south"}, format="multipart"
        )

    assert ambiguous.status_code == 400 and ambiguous.json()["code"] == "organisation_required"
    assert named.status_code == 202 and named.json()["organisation"] == "south"


def test_it_hides_an_unpublished_version_from_other_organisations_everywhere(
    people: dict[str, Any], north: Any, south: Any, global_default: Any, north_only: Any
) -> None:
    south_batch = factories.BatchFactory(organisation=south, model_version=global_default)
    predict(factories.RecordingFactory(batch=south_batch), global_default, "normal")
    outsider = api_as(people["south researcher"])

    listed = [row["id"] for row in outsider.get("/api/v1/models/?all=true").json()]
    detail = outsider.get(f"/api/v1/models/{north_only.pk}/")
    drift = outsider.get(f"/api/v1/models/{north_only.pk}/drift/")
    diff = outsider.get("/api/v1/models/diff/", {"a": global_default.slug, "b": north_only.slug})
    uploaded = upload(people["south researcher"], model=north_only.slug)
    reanalysed = outsider.post(
        "/api/v1/reanalyses/", {"batches": [str(south_batch.pk)], "model": north_only.slug}, format="json"
    )
    as_default = outsider.post(
        f"/api/v1/models/{north_only.pk}/default/", {"organisation": "south"}, format="json"
    )

    assert north_only.pk not in listed and global_default.pk in listed
    assert (detail.status_code, drift.status_code, diff.status_code) == (404, 404, 404)
    assert (uploaded.status_code, uploaded.json()["code"]) == (400, "unknown_model")
    assert (reanalysed.status_code, reanalysed.json()["code"]) == (400, "unknown_model")
    assert as_default.status_code == 404
    assert not Batch.objects.filter(model_version=north_only).exists()


def test_it_lets_the_owning_organisation_use_its_unpublished_version(
    people: dict[str, Any], north: Any, global_default: Any, north_only: Any
) -> None:
    insider = api_as(people["north uploader"])

    listed = [row["id"] for row in insider.get("/api/v1/models/").json()]
    uploaded = upload(people["north uploader"], model=north_only.slug)
    chosen = api_as(people["north admin"]).post(
        f"/api/v1/models/{north_only.pk}/default/", {"organisation": "north"}, format="json"
    )

    assert north_only.pk in listed
    assert uploaded.status_code == 201 and uploaded.json()["model_version"] == north_only.slug
    assert chosen.status_code == 200


def test_it_keeps_an_unpublished_version_to_its_organisation_for_a_member_of_both(
    researcher: Any, north: Any, south: Any, global_default: Any, north_only: Any
) -> None:
    factories.MembershipFactory(user=researcher, organisation=south, role=Membership.Role.RESEARCHER)
    client = api_as(researcher)

    as_default = client.post(
        f"/api/v1/models/{north_only.pk}/default/", {"organisation": "south"}, format="json"
    )
    uploaded = upload(researcher, model=north_only.slug, organisation="south")

    assert as_default.status_code == 409 and as_default.json()["code"] == "not_published"
    assert uploaded.status_code == 400 and uploaded.json()["code"] == "unknown_model"


def test_it_makes_only_a_published_version_the_global_default(staff: Any, north_only: Any) -> None:
    refused = api_as(staff).post(f"/api/v1/models/{north_only.pk}/default/")
    api_as(staff).post(f"/api/v1/models/{north_only.pk}/publish/")
    moved = api_as(staff).post(f"/api/v1/models/{north_only.pk}/default/")

    assert refused.status_code == 409 and refused.json()["code"] == "not_published"
    assert moved.status_code == 200 and moved.json()["is_default"] is True


@pytest.mark.parametrize("role", ["north researcher", "north admin", "north uploader", "south researcher"])
def test_it_lets_only_staff_publish(people: dict[str, Any], north_only: Any, role: str) -> None:
    response = api_as(people[role]).post(f"/api/v1/models/{north_only.pk}/publish/")

    assert response.status_code == 403 and response.json()["code"] == "staff_only"
    north_only.refresh_from_db()
    assert north_only.published is False


def test_it_shows_a_published_version_to_every_organisation(
    people: dict[str, Any], south: Any, global_default: Any, north_only: Any
) -> None:
    south_batch = factories.BatchFactory(organisation=south, model_version=global_default)
    factories.RecordingFactory(batch=south_batch)

    published = api_as(people["staff"]).post(f"/api/v1/models/{north_only.pk}/publish/")
    outsider = api_as(people["south researcher"])

    assert published.status_code == 200 and published.json()["published"] is True
    assert published.json()["organisation"] == "north"
    assert outsider.get(f"/api/v1/models/{north_only.pk}/").status_code == 200
    assert north_only.pk in [row["id"] for row in outsider.get("/api/v1/models/").json()]
    assert upload(people["south researcher"], model=north_only.slug).status_code == 201
    reanalysed = outsider.post(
        "/api/v1/reanalyses/", {"batches": [str(south_batch.pk)], "model": north_only.slug}, format="json"
    )
    assert reanalysed.status_code == 201, reanalysed.content


# --- the version page -------------------------------------------------------------------------


def test_it_gives_researchers_and_admins_a_button_for_their_organisations_default(
    client: Any, people: dict[str, Any], north: Any, global_default: Any
) -> None:
    chosen = factories.ModelVersionFactory(version="2.0")
    button = "Make the default for North Clinic"

    client.force_login(people["north uploader"])
    assert button not in client.get(f"/models/{chosen.pk}/").content.decode()

    client.force_login(people["north admin"])
    assert button in client.get(f"/models/{chosen.pk}/").content.decode()
    response = client.post(
        f"/models/{chosen.pk}/organisation-default", {"organisation": "north"}, follow=True
    )

    north.refresh_from_db()
    assert north.default_model == chosen
    page = response.content.decode()
    assert "is now the default model of North Clinic" in page
    assert "Stop being the default for North Clinic" in page

    client.force_login(people["north uploader"])
    refused = client.post(
        f"/models/{chosen.pk}/organisation-default", {"organisation": "north", "clear": "1"}
    )
    assert refused.status_code == 403


def test_it_lets_staff_publish_from_the_version_page_and_hides_it_from_others_before(
    client: Any, people: dict[str, Any], north_only: Any
) -> None:
    client.force_login(people["south researcher"])
    assert client.get(f"/models/{north_only.pk}/").status_code == 404
    assert north_only.slug not in client.get("/models/").content.decode()

    client.force_login(people["staff"])
    assert "Publish to every organisation" in client.get(f"/models/{north_only.pk}/").content.decode()
    client.post(f"/models/{north_only.pk}/publish")

    client.force_login(people["south researcher"])
    assert client.get(f"/models/{north_only.pk}/").status_code == 200
