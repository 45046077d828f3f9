"""Every API error is JSON with `detail` and `code`, whoever answers it; requests
are refused when they are not what the schema says."""

import uuid
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Membership
from tests import factories


@pytest.fixture
def researcher(db: None) -> Any:
    return factories.MembershipFactory(role=Membership.Role.RESEARCHER).user


@pytest.fixture
def organisation(researcher: Any) -> Any:
    return researcher.organisations.get()


@pytest.fixture
def api(researcher: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher).key}")
    return client


def _error(response: Any) -> tuple[int, str, str]:
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    return response.status_code, body["code"], body["detail"]


def test_it_answers_json_404_for_api_routes_that_do_not_exist(api: APIClient) -> None:
    for path in ("/api/v1/nothing-here/", "/api/v1/recordings/-1/", "/api/v1/batches/not-a-uuid/reports/"):
        assert _error(api.get(path)) == (404, "not_found", "Not found."), path

    page = api.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_it_names_the_code_of_the_frameworks_own_errors(api: APIClient) -> None:
    assert _error(APIClient().get("/api/v1/batches/"))[:2] == (401, "not_authenticated")
    assert _error(api.put("/api/v1/batches/"))[:2] == (405, "method_not_allowed")
    assert _error(api.get(f"/api/v1/batches/{uuid.uuid4()}/")) == (404, "not_found", "No such batch")
    assert _error(api.get("/api/v1/files/forged-token/"))[:2] == (404, "not_found")


@pytest.mark.parametrize("page", ["last", "", "0", "-1", " 2", "+2", "1_0", "\uff12", "1.0", "2"])
def test_it_refuses_a_page_that_is_not_a_page_number_from_1(
    api: APIClient, organisation: Any, page: str
) -> None:
    factories.BatchFactory(organisation=organisation)  # one batch: "2" is past the end

    status, code, _ = _error(api.get("/api/v1/batches/", {"page": page}))

    assert (status, code) == (404, "invalid_page")


def test_it_serves_page_1_with_or_without_the_parameter(api: APIClient, organisation: Any) -> None:
    factories.BatchFactory(organisation=organisation)

    assert api.get("/api/v1/batches/").json()["count"] == 1
    assert api.get("/api/v1/batches/", {"page": "1"}).json()["count"] == 1


def test_it_gives_a_refused_form_a_detail_naming_each_field(api: APIClient) -> None:
    response = api.post("/api/v1/sites/", {"notes": "no name"}, format="json")

    assert _error(response) == (400, "invalid", "name: This field is required.")
    assert response.json()["errors"] == {"name": ["This field is required."]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": 0}, "name", "Expected a string."),
        ({"name": "Ward 9", "is_default": "yes"}, "is_default", "Expected true or false."),
    ],
)
def test_it_refuses_json_values_of_the_wrong_type(
    api: APIClient, body: dict[str, Any], field: str, message: str
) -> None:
    response = api.post("/api/v1/sites/", body, format="json")

    assert _error(response)[:2] == (400, "invalid")
    assert response.json()["errors"] == {field: [message]}


def test_it_refuses_a_reanalysis_naming_a_batch_by_a_number(api: APIClient) -> None:
    response = api.post("/api/v1/reanalyses/", {"batches": [0]}, format="json")

    assert response.status_code == 400 and response.json()["errors"] == {"batches": ["Expected a string."]}


def test_it_still_reads_form_encoded_sites(api: APIClient) -> None:
    response = api.post("/api/v1/sites/", {"name": "Ward 9", "is_default": "true"})

    assert response.status_code == 201 and response.json()["is_default"] is True


def test_it_refuses_filters_and_flags_it_does_not_know(api: APIClient, organisation: Any) -> None:
    batch = factories.BatchFactory(organisation=organisation)

    recordings = api.get(f"/api/v1/batches/{batch.pk}/recordings/", {"status": "AAA"})
    models = api.get("/api/v1/models/", {"all": "maybe"})

    assert _error(recordings)[:2] == (400, "invalid") and "status" in recordings.json()["errors"]
    assert _error(models)[:2] == (400, "invalid") and "all" in models.json()["errors"]
    assert api.get(f"/api/v1/batches/{batch.pk}/recordings/", {"status": "done"}).status_code == 200


def test_it_lists_a_version_nobody_registered_with_a_null_registrant(api: APIClient) -> None:
    factories.ModelVersionFactory(registered_by=None)
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    listed = api.get("/api/v1/models/").json()
    registrant = schema["components"]["schemas"]["ModelVersionDetail"]["properties"]["registered_by"]

    assert [version["registered_by"] for version in listed] == [None]
    assert registrant["nullable"] is True
