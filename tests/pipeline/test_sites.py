"""Site profiles: fitting a site's calibration on labelled predictions, and who may name a site."""

import io
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from jobs.models import Batch, Membership, ModelVersion, SiteCalibration
from jobs.services import sites
from tests import factories

SCREENING = {"positive_class": "abnormal", "decision_threshold": 0.5}
# A gap in the scores between the bulk of each class: the best MAcc threshold lies in it.
NORMAL_BULK_TOP, ABNORMAL_BULK_BOTTOM = 0.40, 0.50


def screening_model() -> ModelVersion:
    return factories.ModelVersionFactory(classes=["normal", "abnormal"], manifest=SCREENING)


def finished_batch(organisation: Any = None, **fields: Any) -> Batch:
    return factories.BatchFactory(
        organisation=organisation or factories.OrganisationFactory(),
        model_version=screening_model(),
        status=Batch.Status.COMPLETED,
        **fields,
    )


def add_predictions(batch: Batch, *, normal: list[float], abnormal: list[float]) -> None:
    for truth, scores in (("normal", normal), ("abnormal", abnormal)):
        for score in scores:
            recording = factories.RecordingFactory(batch=batch, label=truth)
            factories.PredictionFactory(recording=recording, raw_probability=score)


def separable_scores(per_class: int) -> tuple[list[float], list[float]]:
    """All but 3 of each class on their side of the gap (0.40, 0.50); 3 of each on the wrong side,
    far enough in that no other threshold does better."""
    bulk = per_class - 3
    normal = [*np.linspace(0.05, NORMAL_BULK_TOP, bulk), 0.62, 0.70, 0.80]
    abnormal = [*np.linspace(ABNORMAL_BULK_BOTTOM, 0.95, bulk), 0.10, 0.20, 0.30]
    return [float(v) for v in normal], [float(v) for v in abnormal]


def researcher_of(organisation: Any) -> Any:
    return factories.MembershipFactory(organisation=organisation, role=Membership.Role.RESEARCHER).user


def api_as(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_it_fits_platt_and_the_best_macc_threshold_with_intervals_around_the_sample_rates(db: None) -> None:
    batch = finished_batch()
    normal, abnormal = separable_scores(25)
    add_predictions(batch, normal=normal, abnormal=abnormal)
    site = factories.SiteFactory(organisation=batch.organisation)

    profile = sites.fit_site_calibration(batch, site, target="macc", user=researcher_of(batch.organisation))

    assert profile.is_platt and profile.slope is not None and profile.slope > 0
    assert sites.site_probability(profile, NORMAL_BULK_TOP) < profile.threshold
    assert profile.threshold < sites.site_probability(profile, ABNORMAL_BULK_BOTTOM)
    assert (profile.n_normal, profile.n_abnormal) == (25, 25)
    assert profile.sensitivity == pytest.approx(22 / 25) and profile.specificity == pytest.approx(22 / 25)
    assert profile.sensitivity_low <= profile.sensitivity <= profile.sensitivity_high
    assert profile.specificity_low <= profile.specificity <= profile.specificity_high
    assert profile.sensitivity_high - profile.sensitivity_low > 0.05  # 25 recordings: a real interval
    assert profile.confusion_matrix["rows_truth_columns_predicted"] == [[22, 3], [3, 22]]
    assert profile.roc_points[0] == [0.0, 0.0, None] and profile.roc_points[-1][:2] == [1.0, 1.0]
    assert 0.5 < profile.roc_auc < 1.0
    assert profile.is_active and profile.version == 1 and profile.source_batch == batch


def test_it_sets_only_a_threshold_midway_in_the_gap_with_fewer_than_20_of_a_class(db: None) -> None:
    batch = finished_batch()
    normal, abnormal = separable_scores(15)
    add_predictions(batch, normal=normal, abnormal=abnormal)

    profile = sites.fit_site_calibration(
        batch, factories.SiteFactory(organisation=batch.organisation), target="macc",
        user=researcher_of(batch.organisation),
    )  # fmt: skip

    assert (profile.slope, profile.intercept) == (None, None)
    assert profile.threshold == pytest.approx((NORMAL_BULK_TOP + ABNORMAL_BULK_BOTTOM) / 2)
    assert sites.site_probability(profile, 0.47) == 0.47  # the raw score, uncalibrated
    assert (profile.sensitivity, profile.specificity) == (12 / 15, 12 / 15)


def test_it_picks_the_highest_threshold_whose_sensitivity_reaches_the_target(db: None) -> None:
    batch = finished_batch()
    abnormal = [0.30 + 0.03 * i for i in range(20)]
    add_predictions(batch, normal=[0.05 + 0.02 * i for i in range(15)], abnormal=abnormal)

    profile = sites.fit_site_calibration(
        batch, factories.SiteFactory(organisation=batch.organisation), target="sensitivity",
        min_sensitivity=0.9, user=researcher_of(batch.organisation),
    )  # fmt: skip

    # 18 of the 20 abnormal recordings must be called: the 18th highest score is the threshold.
    assert profile.threshold == pytest.approx(sorted(abnormal, reverse=True)[17])
    assert profile.sensitivity == pytest.approx(0.9)
    assert (profile.target, profile.target_value) == ("sensitivity", 0.9)


def test_it_refuses_too_few_labels_and_says_how_many_more_are_needed(db: None) -> None:
    batch = finished_batch()
    add_predictions(batch, normal=[0.1, 0.2, 0.3], abnormal=[0.6, 0.7, 0.8, 0.9, 0.95])
    factories.RecordingFactory(batch=batch, label="")  # unlabelled recordings do not count
    site = factories.SiteFactory(organisation=batch.organisation)
    researcher = researcher_of(batch.organisation)

    with pytest.raises(sites.SiteRefused) as refused:
        sites.fit_site_calibration(batch, site, target="macc", user=researcher)
    response = api_as(researcher).post(
        f"/api/v1/sites/{site.pk}/calibrations/", {"batch": str(batch.pk), "target": "macc"}, format="json"
    )

    assert "needs 7 more normal and 5 more abnormal labelled recordings" in refused.value.message
    assert response.status_code == 400
    assert response.json()["code"] == "too_few_labels" and "7 more normal" in response.json()["detail"]
    assert not SiteCalibration.objects.exists()


def test_it_numbers_calibrations_per_site_and_version_and_keeps_only_the_newest_active(db: None) -> None:
    batch = finished_batch()
    normal, abnormal = separable_scores(12)
    add_predictions(batch, normal=normal, abnormal=abnormal)
    site = factories.SiteFactory(organisation=batch.organisation)
    researcher = researcher_of(batch.organisation)

    first = sites.fit_site_calibration(batch, site, target="macc", user=researcher)
    second = sites.fit_site_calibration(
        batch, site, target="sensitivity", min_sensitivity=1.0, user=researcher
    )

    first.refresh_from_db()
    assert (first.version, first.is_active) == (1, False)
    assert (second.version, second.is_active, second.created_by) == (2, True, researcher)
    assert sites.active_calibration(site, batch.model_version) == second


def test_it_lets_only_researchers_and_administrators_fit_and_create(db: None) -> None:
    batch = finished_batch()
    add_predictions(batch, normal=[0.1] * 10, abnormal=[0.9] * 10)
    site = factories.SiteFactory(organisation=batch.organisation)
    uploader = factories.MembershipFactory(organisation=batch.organisation).user

    fitted = api_as(uploader).post(
        f"/api/v1/sites/{site.pk}/calibrations/", {"batch": str(batch.pk), "target": "macc"}, format="json"
    )
    created = api_as(uploader).post("/api/v1/sites/", {"name": "Ward 9"}, format="json")

    assert (fitted.status_code, created.status_code) == (403, 403)
    assert api_as(uploader).get(f"/api/v1/sites/{site.pk}/").status_code == 200  # members may read


def test_it_answers_404_for_another_organisations_site_and_its_calibrations(db: None) -> None:
    theirs = factories.SiteCalibrationFactory(model_version=screening_model())
    batch = finished_batch()
    researcher = researcher_of(batch.organisation)
    client = api_as(researcher)

    detail = client.get(f"/api/v1/sites/{theirs.site.pk}/")
    calibrations = client.get(f"/api/v1/sites/{theirs.site.pk}/calibrations/")
    fit = client.post(
        f"/api/v1/sites/{theirs.site.pk}/calibrations/",
        {"batch": str(batch.pk), "target": "macc"},
        format="json",
    )
    listed = client.get("/api/v1/sites/").json()["results"]

    assert (detail.status_code, calibrations.status_code, fit.status_code) == (404, 404, 404)
    assert listed == []


def test_it_refuses_to_fit_a_site_on_another_organisations_batch(db: None) -> None:
    theirs = finished_batch()
    add_predictions(theirs, normal=[0.1] * 10, abnormal=[0.9] * 10)
    mine = factories.SiteFactory()
    researcher = researcher_of(mine.organisation)

    response = api_as(researcher).post(
        f"/api/v1/sites/{mine.pk}/calibrations/", {"batch": str(theirs.pk), "target": "macc"}, format="json"
    )

    assert response.status_code == 404 and response.json()["code"] == "unknown_batch"


def named(data: bytes, filename: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = filename
    return handle


def wav_bytes() -> bytes:
    from tests.conftest import SAMPLES

    return (SAMPLES / "a0033.wav").read_bytes()


def test_it_refuses_an_upload_naming_another_organisations_site(db: None, default_model_row: Any) -> None:
    theirs = factories.SiteFactory(name="Ward 1")
    uploader = factories.MembershipFactory().user

    by_id = api_as(uploader).post(
        "/api/v1/batches/", {"file": named(wav_bytes(), "a.wav"), "site": str(theirs.pk)}, format="multipart"
    )
    by_name = api_as(uploader).post(
        "/api/v1/batches/", {"file": named(wav_bytes(), "a.wav"), "site": "Ward 1"}, format="multipart"
    )

    assert by_id.status_code == 400 and by_id.json()["code"] == "unknown_site"
    assert "has no site" in by_id.json()["detail"] and str(theirs.pk) in by_id.json()["detail"]
    assert by_name.status_code == 400 and by_name.json()["code"] == "unknown_site"
    assert not Batch.objects.filter(organisation__membership__user=uploader).exists()


def test_it_files_an_upload_under_the_named_or_else_the_default_site(
    db: None, default_model_row: Any
) -> None:
    membership = factories.MembershipFactory()
    default = factories.SiteFactory(organisation=membership.organisation, name="Main", is_default=True)
    other = factories.SiteFactory(organisation=membership.organisation, name="Ward 2")
    client = api_as(membership.user)

    named_site = client.post(
        "/api/v1/batches/", {"file": named(wav_bytes(), "a.wav"), "site": "ward 2"}, format="multipart"
    )
    unnamed = client.post("/api/v1/batches/", {"file": named(wav_bytes(), "b.wav")}, format="multipart")

    assert named_site.status_code == 201 and unnamed.status_code == 201
    assert named_site.json()["site"]["id"] == other.pk
    assert unnamed.json()["site"]["name"] == default.name
    assert Batch.objects.get(pk=unnamed.json()["id"]).site == default


@pytest.fixture
def default_model_row(db: None) -> ModelVersion:
    """A default model version row (uploads need one; nothing here runs it)."""
    return factories.ModelVersionFactory(
        classes=["normal", "abnormal"], manifest=SCREENING, is_default=True, status=ModelVersion.Status.ACTIVE
    )
