"""Registering model versions: checks, permissions, default and retirement."""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from jobs.models import ModelVersion
from jobs.services import registry
from ml.bundle import (
    DEFAULT_SCREENING_BUNDLE,
    WEIGHTS_FILE,
    pack_bundle,
    read_manifest,
    sha256_file,
)
from tests import factories
from tests.ml.conftest import beat_model_of
from tests.registry.conftest import api_as, copy_bundle, rewrite_manifest, zip_directory


def bad_manifest(tmp_path: Path) -> Path:
    bundle = copy_bundle(tmp_path)
    (bundle / "manifest.json").write_text('{"name": "screening", "version": ')
    return bundle


def wrong_checksum(tmp_path: Path) -> Path:
    bundle = copy_bundle(tmp_path)
    with (bundle / WEIGHTS_FILE).open("ab") as weights:
        weights.write(b"tampered")
    return bundle


def incompatible_features(tmp_path: Path) -> Path:
    bundle = copy_bundle(tmp_path)
    rewrite_manifest(bundle, feature_code_version=99)
    return bundle


def changed_feature_config(tmp_path: Path) -> Path:
    bundle = copy_bundle(tmp_path)
    manifest = registry.check_bundle(bundle)
    rewrite_manifest(bundle, feature_config={**manifest.feature_config, "n_mels": 40})
    return bundle


BROKEN = [
    (bad_manifest, "is not valid JSON"),
    (wrong_checksum, "weights checksum mismatch"),
    (incompatible_features, "feature code version 99"),
    (changed_feature_config, "does not match its configuration"),
]


@pytest.mark.parametrize(("breakage", "message"), BROKEN, ids=[case[0].__name__ for case in BROKEN])
def test_it_rejects_a_broken_bundle_in_the_command_with_a_clear_message(
    db: None, tmp_path: Path, breakage: Any, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("register_model", str(breakage(tmp_path)))
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(("breakage", "message"), BROKEN, ids=[case[0].__name__ for case in BROKEN])
def test_it_rejects_a_broken_bundle_over_the_api_with_a_clear_message(
    researcher: Any, tmp_path: Path, breakage: Any, message: str
) -> None:
    packed = zip_directory(breakage(tmp_path), tmp_path / "bundle.zip")
    with packed.open("rb") as upload:
        response = api_as(researcher).post("/api/v1/models/", {"bundle": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_bundle"
    assert message in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_it_refuses_a_file_that_is_not_a_bundle_archive(researcher: Any, tmp_path: Path) -> None:
    junk = tmp_path / "bundle.zip"
    junk.write_bytes(b"not a zip at all")
    with junk.open("rb") as upload:
        response = api_as(researcher).post("/api/v1/models/", {"bundle": upload}, format="multipart")
    assert response.status_code == 400
    assert "not a valid zip" in response.json()["detail"]


def test_it_forbids_uploaders_to_register_models(uploader: Any, tmp_path: Path) -> None:
    packed = zip_directory(copy_bundle(tmp_path, version="9.9.9"), tmp_path / "bundle.zip")
    with packed.open("rb") as upload:
        response = api_as(uploader).post("/api/v1/models/", {"bundle": upload}, format="multipart")
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_it_registers_with_the_command_after_a_smoke_prediction(db: None, tmp_path: Path) -> None:
    call_command("register_model", str(copy_bundle(tmp_path)), "--default")

    version = ModelVersion.objects.get()
    shipped = read_manifest(DEFAULT_SCREENING_BUNDLE)
    assert (version.slug, version.status, version.is_default) == (
        f"{shipped.name}-{shipped.version}",
        "active",
        True,
    )
    assert version.smoke_test["passed"] is True
    assert set(version.smoke_test["probabilities"]) == {"normal", "abnormal"}
    assert version.metrics == shipped.metrics
    assert version.model_card == (DEFAULT_SCREENING_BUNDLE / "CARD.md").read_text(encoding="utf-8")


def test_it_refuses_the_same_version_with_other_weights(db: None, tmp_path: Path) -> None:
    registry.register_bundle(copy_bundle(tmp_path / "first"), make_default=False, smoke=False)
    changed = copy_bundle(tmp_path / "second")
    with (changed / WEIGHTS_FILE).open("ab") as weights:
        weights.write(b"retrained")
    rewrite_manifest(changed, weights_sha256=sha256_file(changed / WEIGHTS_FILE))

    with pytest.raises(registry.RegistrationRefused, match="already registered with other weights"):
        registry.register_bundle(changed, make_default=False, smoke=False)


def test_it_stores_a_lite_export_added_to_the_registered_default_at_start_up(
    db: None, tmp_path: Path, settings: Any
) -> None:
    settings.LUBDUB_MODEL_CACHE = tmp_path / "cache"
    without_export = copy_bundle(tmp_path / "old", lite_file="", lite_sha256="")
    (without_export / read_manifest(DEFAULT_SCREENING_BUNDLE).lite_file).unlink()
    old = registry.set_default(registry.register_bundle(without_export, make_default=False, smoke=False))
    assert not (registry.local_bundle_dir(old) / "model.tflite").exists()

    version, created = registry.ensure_default_model(copy_bundle(tmp_path / "new"))

    committed = read_manifest(DEFAULT_SCREENING_BUNDLE)
    assert (created, version.pk, version.is_default) == (False, old.pk, True)
    assert version.manifest["lite_sha256"] == committed.lite_sha256 != ""
    assert version.bundle_sha256 != old.bundle_sha256
    assert sha256_file(registry.local_bundle_dir(version) / committed.lite_file) == committed.lite_sha256
    again, _ = registry.ensure_default_model(copy_bundle(tmp_path / "again"))
    assert again.bundle_sha256 == version.bundle_sha256


def test_it_keeps_an_earlier_default_and_says_how_to_serve_the_shipped_version(
    db: None, tmp_path: Path, caplog: Any
) -> None:
    old = copy_bundle(tmp_path / "old", version="0.9.0")
    earlier = registry.set_default(registry.register_bundle(old, make_default=False, smoke=False))

    with caplog.at_level("WARNING", logger=registry.logger.name):
        version, created = registry.ensure_default_model(copy_bundle(tmp_path / "new"))

    shipped = read_manifest(DEFAULT_SCREENING_BUNDLE)
    assert (created, version.pk) == (False, earlier.pk)
    assert f"this release ships {shipped.name}-{shipped.version}" in caplog.text
    assert "register_model" in caplog.text and "--default" in caplog.text
    assert f"lubdub reanalyze --analysed-by {earlier.slug}" in caplog.text


def test_it_lets_staff_move_the_default_and_refuses_to_retire_it(staff: Any) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = factories.ModelVersionFactory()
    client = api_as(staff)

    moved = client.post(f"/api/v1/models/{new.pk}/default/")
    refused = client.post(f"/api/v1/models/{new.pk}/retire/")
    retired = client.post(f"/api/v1/models/{old.pk}/retire/")

    assert moved.status_code == 200 and moved.json()["is_default"] is True
    assert refused.status_code == 409 and refused.json()["code"] == "is_default"
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    listed = [row["id"] for row in client.get("/api/v1/models/").json()]
    assert listed == [new.pk]
    assert {row["id"] for row in client.get("/api/v1/models/?all=1").json()} == {old.pk, new.pk}


def test_it_forbids_researchers_to_change_the_default_for_every_organisation(researcher: Any) -> None:
    old = factories.ModelVersionFactory(is_default=True)
    new = factories.ModelVersionFactory()
    client = api_as(researcher)

    moved = client.post(f"/api/v1/models/{new.pk}/default/")
    retired = client.post(f"/api/v1/models/{new.pk}/retire/")

    for response in (moved, retired):
        assert response.status_code == 403
        assert response.json()["code"] == "staff_only"
        assert "Only staff" in response.json()["detail"]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_default, new.is_default, new.status) == (True, False, "active")


def test_it_forbids_researchers_to_register_a_bundle_as_the_default(researcher: Any, tmp_path: Path) -> None:
    packed = tmp_path / "bundle.zip"
    with packed.open("wb") as sink:
        pack_bundle(copy_bundle(tmp_path, version="98.0.0"), sink)

    with packed.open("rb") as upload:
        response = api_as(researcher).post(
            "/api/v1/models/", {"bundle": upload, "default": "true"}, format="multipart"
        )

    assert response.status_code == 403
    assert response.json()["code"] == "staff_only"
    assert not ModelVersion.objects.filter(version="98.0.0").exists()


def test_it_forbids_uploaders_to_change_the_default(uploader: Any) -> None:
    version = factories.ModelVersionFactory()
    response = api_as(uploader).post(f"/api/v1/models/{version.pk}/default/")
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.is_default is False


# What only the workers need: the web process loads numpy for the reports' and
# calibrations' figures, and none of these.
WORKER_ONLY = ("tensorflow", "keras", "scipy", "librosa", "sklearn", "matplotlib", "soundfile")


def test_it_keeps_tensorflow_and_the_audio_stack_out_of_the_web_process() -> None:
    script = (
        "import django, sys; django.setup(); "
        "import config.urls, jobs.pages_models, jobs.api.models_api, jobs.api.reanalysis_api; "
        f"print(sorted(name for name in {WORKER_ONLY!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# The ml modules the web side shares with the workers: the audio header rule, the
# thread-pool variables and the label maps, which import nothing but the standard
# library (tests/ml).
SHARED_LIGHT_ML = ["ml", "ml.labels", "ml.sniff", "ml.threads"]


def test_it_looks_model_versions_up_without_numpy_or_scipy() -> None:
    script = (
        "import django, sys; django.setup(); "
        "from jobs.services import model_lookup, sniff; import ml.labels; "
        "print(sorted(name for name in sys.modules"
        " if name in ('numpy', 'scipy') or name.split('.')[0] == 'ml'))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert set(ast.literal_eval(result.stdout.strip())) <= set(SHARED_LIGHT_ML)


def composite_of_copies(target: Path) -> Path:
    """The committed beat bundle with a copy of itself as a member (a composite bundle)."""
    beat_model_of(DEFAULT_SCREENING_BUNDLE, target)
    beat_model_of(DEFAULT_SCREENING_BUNDLE, target / "copy")
    member = read_manifest(target / "copy")
    rewrite_manifest(
        target,
        version="9.0.0",
        members=[{"path": "copy", "weight": 0.3, "weights_sha256": member.weights_sha256}],
    )
    return target


def test_it_registers_a_composite_bundle_and_refuses_it_again_with_another_member(
    db: None, tmp_path: Path
) -> None:
    version = registry.register_bundle(composite_of_copies(tmp_path / "first"), make_default=False)
    assert version.status == "active"
    assert version.smoke_test["passed"] is True  # both models loaded and run
    assert version.manifest["members"][0]["path"] == "copy"
    assert version.architecture == "gru + gru"

    changed = composite_of_copies(tmp_path / "second")
    with (changed / "copy" / WEIGHTS_FILE).open("ab") as weights:
        weights.write(b"retrained")
    rewrite_manifest(changed / "copy", weights_sha256=sha256_file(changed / "copy" / WEIGHTS_FILE))
    members = [
        {"path": "copy", "weight": 0.3, "weights_sha256": sha256_file(changed / "copy" / WEIGHTS_FILE)}
    ]
    rewrite_manifest(changed, members=members)
    with pytest.raises(registry.RegistrationRefused, match="already registered with other weights"):
        registry.register_bundle(changed, make_default=False, smoke=False)
