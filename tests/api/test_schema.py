"""The OpenAPI schema says what the API answers: schemathesis calls every operation.

Every check schemathesis has runs on every response: no 5xx, status codes,
content types, headers and bodies as documented, schema-violating requests
refused, schema-valid ones accepted, requests without credentials refused.
The run is bounded and reproducible: a fixed seed, derandomized generation and
a fixed number of examples per operation (about a minute on two cores).

Requests go straight into the WSGI application in the test's thread, as a
researcher of an organisation that has a batch with a recording, a prediction
and a report, a site with a calibration, and two model versions; the schema's
examples point the path parameters at those rows, so the explicit-examples
phase reads real objects while the other phases probe ids that are not there.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from werkzeug.test import Client

from config.wsgi import application
from jobs.models import Membership, Report, ResumableUpload
from jobs.services import resumable
from tests import factories
from tests.web import builders

SEED = 20260518
MAX_EXAMPLES = 50
# Rows with fixed keys, so the schema's examples can name them before any test runs.
BATCH_ID = uuid.UUID("00000000-0000-4000-8000-00000000b001")
RECORDING_ID = 910001
MODEL_ID, MODEL_VERSION = 910001, "91.1"
OTHER_MODEL_ID, OTHER_MODEL_VERSION = 910002, "91.2"
SITE_ID = 910001
UPLOAD_ID = uuid.UUID("00000000-0000-4000-8000-00000000c001")
EXAMPLE_IDS = {
    "/api/v1/uploads/": str(UPLOAD_ID),
    "/api/v1/batches/": str(BATCH_ID),
    "/api/v1/recordings/": RECORDING_ID,
    "/api/v1/models/": MODEL_ID,
    "/api/v1/sites/": SITE_ID,
}
EXAMPLE_QUERY = {
    "number": 1,
    "fmt": "html",
    "a": f"screening-{MODEL_VERSION}",
    "b": f"screening-{OTHER_MODEL_VERSION}",
    "batch": str(BATCH_ID),
}
# Whether an upload is audio, a zip or a model bundle is beyond what a schema can
# say, so for these a refusal of a well-formed request (400, 413, 415) is no failure.
UPLOAD_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "415", "429", "5xx"]
UPLOADS = ("/api/v1/batches/", "/api/v1/models/")
# Nor can it say which labels are the recording's model's classes, or that a review
# confirms or labels (not both, not neither): a refusal (400, 409) is no failure either.
REVIEW_STATUSES = ["2xx", "400", "401", "403", "404", "409"]
REVIEWS = "/api/v1/recordings/{id}/reviews/"
# Nor which sizes and options a resumable upload may have, nor whether its parts
# are all there, go through the app (filesystem storage only) or match its SHA-256.
RESUMABLE = {
    ("POST", "/api/v1/uploads/"): ["2xx", "400", "401", "404", "413", "5xx"],
    ("PUT", "/api/v1/uploads/{id}/parts/{number}/"): ["2xx", "400", "401", "404", "409", "410", "411"],
    ("POST", "/api/v1/uploads/{id}/complete/"): ["2xx", "400", "401", "404", "409", "410", "415", "422"],
    ("DELETE", "/api/v1/uploads/{id}/"): ["2xx", "401", "404", "409"],
}


def _with_examples(raw: dict[str, Any]) -> dict[str, Any]:
    for path, operations in raw["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                if parameter["in"] == "path" and name == "id":
                    prefix = next(prefix for prefix in EXAMPLE_IDS if path.startswith(prefix))
                    parameter["example"] = EXAMPLE_IDS[prefix]
                elif name in EXAMPLE_QUERY:
                    parameter["example"] = EXAMPLE_QUERY[name]
    reanalysis = raw["paths"]["/api/v1/reanalyses/"]["post"]["requestBody"]["content"]["application/json"]
    reanalysis["example"] = {"batches": [str(BATCH_ID)], "model": EXAMPLE_QUERY["b"]}
    return raw


def _load_schema() -> Any:
    served = Client(application).get("/api/schema/?format=json")
    assert served.status_code == 200, served.get_data(as_text=True)
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "operations": [
                {
                    "include-method": "POST",
                    "include-path": path,
                    "checks": {"positive_data_acceptance": {"expected-statuses": UPLOAD_STATUSES}},
                }
                for path in UPLOADS
            ]
            + [
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": {"positive_data_acceptance": {"expected-statuses": statuses}},
                }
                for (method, path), statuses in RESUMABLE.items()
            ]
            + [
                {
                    "include-method": "POST",
                    "include-path": REVIEWS,
                    "checks": {"positive_data_acceptance": {"expected-statuses": REVIEW_STATUSES}},
                }
            ],
        }
    )
    loaded = schemathesis.openapi.from_dict(_with_examples(served.get_json()), config=config)
    loaded.app = application
    return loaded


schema = _load_schema()


@pytest.fixture
def researcher_token(db: None) -> Iterator[str]:
    """The rows the examples name, and a token of their organisation's researcher."""
    membership = factories.MembershipFactory(role=Membership.Role.RESEARCHER)
    user, organisation = membership.user, membership.organisation
    model = builders.screening_model(pk=MODEL_ID, version=MODEL_VERSION, is_default=True)
    builders.screening_model(pk=OTHER_MODEL_ID, version=OTHER_MODEL_VERSION)
    batch = factories.BatchFactory(
        pk=BATCH_ID, organisation=organisation, created_by=user, model_version=model
    )
    recording = factories.RecordingFactory(pk=RECORDING_ID, batch=batch)
    factories.PredictionFactory(recording=recording)
    Report.objects.create(batch=batch, model_version=model, format="html", storage_key="reports/example.html")
    site = factories.SiteFactory(pk=SITE_ID, organisation=organisation)
    resumable.open_upload(
        user=user, organisation=organisation, filename="ward.zip", size=100, sha256="a" * 64, options={}
    )
    ResumableUpload.objects.filter(created_by=user).update(id=UPLOAD_ID)
    factories.SiteCalibrationFactory(site=site, model_version=model, created_by=user)
    # Django closes a connection at each request's start and end when it is inside a
    # transaction; here that is the test's own, so keep it open (as Django's test client does).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield Token.objects.create(user=user).key
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# One operation's examples share its rows: a DELETE may make later ones 404, as documented.
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_it_answers_as_the_schema_says(case: Any, researcher_token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Token {researcher_token}"})
