"""Site calibrations decide later batches of their site, end to end on a real worker."""

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from jobs import storage
from jobs.models import Batch, Membership, ModelVersion, Prediction, Report, SiteCalibration
from jobs.services import registry
from ml.bundle import DEFAULT_SCREENING_BUNDLE, MANIFEST_FILE
from ml.calibration import UNCERTAIN
from tests import factories
from tests.pipeline.conftest import LABELS, sample_archive, upload, wait_for_batch
from tests.polling import poll_until

FEW = ["a0033.wav", "a0035.wav", "a0071.wav", "d0001.wav"]


def make_researcher(member: Any) -> None:
    Membership.objects.filter(user=member).update(role=Membership.Role.RESEARCHER)


def predictions_by_path(batch: Batch, version: ModelVersion) -> dict[str, Prediction]:
    rows = Prediction.objects.filter(recording__batch=batch, model_version=version).select_related(
        "recording"
    )
    return {row.recording.path: row for row in rows}


def follows_the_site_rule(prediction: Prediction, profile: SiteCalibration) -> bool:
    """A class from the site's threshold, or uncertain for a reason other than the bundle's threshold."""
    if prediction.decision == UNCERTAIN:
        near = [reason for reason in prediction.decision_reasons if "of the threshold" in reason]
        return bool(prediction.decision_reasons) and all(
            f"threshold {profile.threshold:.2f}" in reason for reason in near
        )
    site_label = "abnormal" if prediction.site_probability >= profile.threshold else "normal"
    return prediction.decision == site_label


def another_version(tmp_path: Path, version: str) -> ModelVersion:
    """The shipped screening bundle registered again under another version."""
    bundle = tmp_path / version
    shutil.copytree(DEFAULT_SCREENING_BUNDLE, bundle)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    (bundle / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": version}))
    return registry.register_bundle(bundle, make_default=False, smoke=False)


def test_it_decides_a_calibrated_sites_batch_with_its_rule_and_names_it(
    shared_worker: Any, default_model: Any, api: Any, member: Any
) -> None:
    make_researcher(member)
    site = api.post("/api/v1/sites/", {"name": "Ward 7", "stethoscope": "Eko"}, format="json").json()
    labelled = wait_for_batch(
        upload(api, sample_archive(sorted(LABELS)), "labelled.zip", site="Ward 7")["id"]
    )
    fitted = api.post(
        f"/api/v1/sites/{site['id']}/calibrations/",
        {"batch": str(labelled.pk), "target": "sensitivity", "value": 0.5},
        format="json",
    )
    assert fitted.status_code == 201, fitted.content
    profile = SiteCalibration.objects.get(pk=fitted.json()["id"])

    created = upload(api, sample_archive(sorted(LABELS)), "later.zip", site=str(site["id"]))

    later = wait_for_batch(created["id"])
    before, after = predictions_by_path(labelled, default_model), predictions_by_path(later, default_model)
    assert (profile.n_normal, profile.n_abnormal, profile.slope) == (12, 12, None)  # threshold only
    assert all(row.site_calibration_id is None for row in before.values())
    for path, row in after.items():
        assert row.site_calibration == profile
        assert row.raw_probability == before[path].raw_probability  # the model's score, untouched
        assert row.probabilities == before[path].probabilities and row.label == before[path].label
        assert row.site_probability == row.raw_probability
        assert follows_the_site_rule(row, profile), (path, row.decision, row.decision_reasons)
    assert any(row.decision != before[path].decision for path, row in after.items())

    detail = api.get(f"/api/v1/batches/{later.pk}/").json()
    shown = api.get(f"/api/v1/recordings/{next(iter(after.values())).recording_id}/").json()["predictions"][0]
    assert detail["site"]["name"] == "Ward 7"
    assert shown["site_calibration"]["id"] == profile.pk and shown["site_calibration"]["version"] == 1
    assert shown["site_probability"] == shown["raw_probability"]
    poll_until(lambda: Report.objects.filter(batch=later).count() == 4, timeout=90)
    report = Report.objects.get(batch=later, format="csv")
    table = list(csv.DictReader(io.StringIO(storage.read_bytes(report.storage_key).decode())))
    assert {(row["site"], row["site_calibration"]) for row in table} == {("Ward 7", "v1")}
    assert {row["path"]: row["decision"] for row in table} == {p: r.decision for p, r in after.items()}
    summary = json.loads(storage.read_bytes(Report.objects.get(batch=later, format="json").storage_key))
    assert summary["site"]["name"] == "Ward 7"
    assert summary["site_calibrations"] == [
        {"id": profile.pk, "site": "Ward 7", "version": 1, "predictions": len(after)}
    ]


def test_it_uses_no_other_versions_profile_when_a_sites_batch_is_reanalysed(
    shared_worker: Any, default_model: Any, api: Any, member: Any, tmp_path: Path
) -> None:
    make_researcher(member)
    site = factories.SiteFactory(organisation=member.organisations.get(), name="Ward 8")
    # Platt with slope 0: every site probability is sigmoid(intercept), far from the threshold.
    original = factories.SiteCalibrationFactory(
        site=site, model_version=default_model, slope=0.0, intercept=6.0, threshold=0.5
    )
    first = wait_for_batch(upload(api, sample_archive(FEW), "few.zip", site="Ward 8")["id"])
    plain, calibrated = another_version(tmp_path, "3.0.0-plain"), another_version(tmp_path, "3.0.0-site")
    newer = factories.SiteCalibrationFactory(
        site=site, model_version=calibrated, slope=0.0, intercept=-6.0, threshold=0.5
    )

    batches = {}
    for version in (plain, calibrated):
        response = api.post(
            "/api/v1/reanalyses/", {"batches": [str(first.pk)], "model": version.slug}, format="json"
        )
        assert response.status_code == 201, response.content
        batches[version.slug] = wait_for_batch(response.json()["batches"][0]["id"])

    assert {row.site_calibration for row in predictions_by_path(first, default_model).values()} == {original}
    for row in predictions_by_path(first, plain).values():
        assert row.batch == batches[plain.slug]
        assert (row.site_calibration, row.site_probability) == (None, None)
        assert row.decision in (row.label, UNCERTAIN)
    for row in predictions_by_path(first, calibrated).values():
        assert row.site_calibration == newer and row.site_probability < 0.01
        assert row.decision in ("normal", UNCERTAIN)
        assert all("threshold" not in reason for reason in row.decision_reasons)
