"""Site pages: the list, a site's calibration evidence, the forms, and site decisions on other pages."""

from typing import Any

import pytest
from django.test import Client

from jobs.models import Batch, Membership, ModelVersion, Site, SiteCalibration
from tests import factories
from tests.web.builders import screening_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher_client(client: Client, member: Any, organisation: Any) -> Client:
    Membership.objects.filter(user=member, organisation=organisation).update(role=Membership.Role.RESEARCHER)
    client.force_login(member)
    return client


def labelled_batch(organisation: Any, version: ModelVersion, *, per_class: int = 12) -> Batch:
    batch = factories.BatchFactory(
        organisation=organisation, model_version=version, status=Batch.Status.COMPLETED, name="labelled week"
    )
    for index in range(per_class):
        for truth, score in (("normal", 0.05 + 0.03 * index), ("abnormal", 0.55 + 0.03 * index)):
            recording = factories.RecordingFactory(batch=batch, label=truth)
            factories.PredictionFactory(recording=recording, raw_probability=score)
    return batch


def test_it_shows_the_active_calibrations_evidence_and_its_roc_curve(
    member_client: Client, organisation: Any
) -> None:
    version = screening_model(is_default=True)
    profile = factories.SiteCalibrationFactory(
        site__organisation=organisation, site__name="Ward 3", model_version=version, threshold=0.4321
    )

    listing = member_client.get("/sites/").content.decode()
    body = member_client.get(f"/sites/{profile.site_id}/").content.decode()
    image = member_client.get(f"/sites/{profile.site_id}/calibrations/{profile.pk}/roc.png")

    assert "Ward 3" in listing and f"{version.slug}</span> v{profile.version}" in listing
    assert "data-threshold>0.432<" in body
    assert "data-sensitivity>90.0 %<" in body and "data-specificity>80.0 %<" in body
    assert "sensitivity 70.0 %–100.0 %, specificity 60.0 %–95.0 %" in body
    assert '<td class="hit">10</td><td>2</td>' in body  # the confusion matrix
    assert f"/sites/{profile.site_id}/calibrations/{profile.pk}/roc.png" in body
    assert "calibrate again" not in body
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


def test_it_says_to_calibrate_again_when_the_default_model_is_another_version(
    member_client: Client, organisation: Any
) -> None:
    calibrated = screening_model()
    newer = screening_model(is_default=True)
    profile = factories.SiteCalibrationFactory(site__organisation=organisation, model_version=calibrated)

    body = member_client.get(f"/sites/{profile.site_id}/").content.decode()

    assert f"calibrated for {calibrated.slug}; the default model is now {newer.slug}: calibrate again" in body


def test_it_creates_a_site_and_fits_its_calibration_from_the_forms(
    researcher_client: Client, organisation: Any, member: Any
) -> None:
    version = screening_model(is_default=True)
    batch = labelled_batch(organisation, version)

    created = researcher_client.post("/sites/", {"name": "Ward 4", "stethoscope": "Eko CORE 500"})
    site = Site.objects.get(organisation=organisation, name="Ward 4")
    form = researcher_client.get(f"/sites/{site.pk}/").content.decode()
    fitted = researcher_client.post(
        f"/sites/{site.pk}/calibrate", {"batch": str(batch.pk), "target": "sensitivity", "value": "0.9"}
    )

    assert created.status_code == 302 and created["Location"] == f"/sites/{site.pk}/"
    assert "labelled week" in form  # offered: finished, with labels
    assert fitted.status_code == 302
    profile = SiteCalibration.objects.get(site=site)
    assert (profile.model_version, profile.source_batch, profile.created_by) == (version, batch, member)
    assert (profile.target, profile.target_value, profile.is_active) == ("sensitivity", 0.9, True)
    assert "data-threshold>" in researcher_client.get(f"/sites/{site.pk}/").content.decode()


def test_it_shows_the_refusal_when_the_batch_has_too_few_labels(
    researcher_client: Client, organisation: Any
) -> None:
    batch = labelled_batch(organisation, screening_model(), per_class=4)
    site = factories.SiteFactory(organisation=organisation)

    response = researcher_client.post(
        f"/sites/{site.pk}/calibrate", {"batch": str(batch.pk), "target": "macc"}
    )

    assert response.status_code == 400
    assert "needs 6 more normal and 6 more abnormal labelled recordings" in response.content.decode()


def test_it_offers_no_forms_to_uploaders(member_client: Client, organisation: Any) -> None:
    site = factories.SiteFactory(organisation=organisation)

    body = member_client.get(f"/sites/{site.pk}/").content.decode()

    assert "Calibrate from a labelled batch" not in body
    assert member_client.post("/sites/", {"name": "Mine"}).status_code == 403
    assert member_client.post(f"/sites/{site.pk}/calibrate", {"target": "macc"}).status_code == 403


def test_it_answers_404_for_another_organisations_site_pages(
    researcher_client: Client, outsider: Any
) -> None:
    theirs = factories.SiteCalibrationFactory(
        site__organisation=outsider.organisations.get(), model_version=screening_model()
    )
    base = f"/sites/{theirs.site_id}/"

    answers = [
        researcher_client.get(base).status_code,
        researcher_client.get(f"{base}calibrations/{theirs.pk}/roc.png").status_code,
        researcher_client.post(f"{base}calibrate", {"target": "macc"}).status_code,
    ]

    assert answers == [404, 404, 404]
    assert theirs.site.name not in researcher_client.get("/sites/").content.decode()


def test_it_points_a_shifted_batch_of_an_uncalibrated_site_to_the_calibration(
    member_client: Client, organisation: Any, member: Any
) -> None:
    version = screening_model()
    site = factories.SiteFactory(organisation=organisation, name="Ward 5")
    factories.SiteCalibrationFactory(site=site, model_version=screening_model())  # another version's
    shifted = factories.BatchFactory(
        organisation=organisation, model_version=version, site=site, shift_warning="KS distance 0.7"
    )
    siteless = factories.BatchFactory(
        organisation=organisation, model_version=version, shift_warning="KS 0.7"
    )
    factories.SiteCalibrationFactory(
        site=factories.SiteFactory(organisation=organisation), model_version=version
    )
    calm = factories.BatchFactory(organisation=organisation, model_version=version, site=site)

    shifted_body = member_client.get(f"/batches/{shifted.pk}/").content.decode()
    siteless_body = member_client.get(f"/batches/{siteless.pk}/").content.decode()
    calm_body = member_client.get(f"/batches/{calm.pk}/").content.decode()

    assert "data-uncalibrated-site" in shifted_body
    assert f'is uncalibrated for <span class="mono">{version.slug}</span>' in shifted_body
    assert f'href="/sites/{site.pk}/">Calibrate the site' in shifted_body
    assert "This batch has no site" in siteless_body and 'href="/sites/">Calibrate the site' in siteless_body
    assert "data-uncalibrated-site" not in calm_body


def test_it_names_the_site_calibration_that_decided_on_the_batch_and_recording_pages(
    member_client: Client, organisation: Any
) -> None:
    version = screening_model()
    profile = factories.SiteCalibrationFactory(
        site__organisation=organisation, site__name="Ward 6", model_version=version, threshold=0.2
    )
    batch = factories.BatchFactory(organisation=organisation, model_version=version, site=profile.site)
    recording = factories.RecordingFactory(batch=batch, storage_key="")
    factories.PredictionFactory(
        recording=recording, raw_probability=0.3, site_calibration=profile, site_probability=0.3,
        decision="uncertain", decision_reasons=["p(abnormal) 0.30 is within 0.10 of the threshold 0.20"],
    )  # fmt: skip

    batch_body = member_client.get(f"/batches/{batch.pk}/").content.decode()
    recording_body = member_client.get(f"/recordings/{recording.pk}/").content.decode()

    assert "data-batch-site>Ward 6</a>" in batch_body
    assert (
        f'data-site-rule="{profile.pk}"' in batch_body and f"site Ward 6 (v{profile.version})" in batch_body
    )
    assert "data-site-decision" in recording_body
    assert "site probability 30 % against its threshold 0.200" in recording_body
