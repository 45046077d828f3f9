"""Bundle manifests: round trip, tamper detection, compatibility and safe archives."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from ml import bundle
from ml.bundle import Manifest, pack_bundle, read_manifest, save_bundle, unpack_bundle, verify_bundle
from ml.errors import BundleError
from ml.features import FeatureConfig

CONFIG = FeatureConfig()


def _manifest() -> Manifest:
    return Manifest(
        name="test",
        version="0.0.1",
        architecture="cnn_gru",
        classes=("normal", "abnormal"),
        sample_rate=CONFIG.sample_rate,
        feature_config=CONFIG.to_dict(),
        feature_fingerprint=CONFIG.fingerprint(),
        model_config={"architecture": "cnn_gru"},
        positive_class="abnormal",
        decision_threshold=0.4,
        metrics={"validation": {"macc": 0.9}},
        training_data_fingerprint="abc123",
    )


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00weights\x01" * 100)
    save_bundle(tmp_path / "b", manifest=_manifest(), weights_path=weights, card_text="# card\n")
    return tmp_path / "b"


def _edit_manifest(bundle_dir: Path, **changes: object) -> None:
    path = bundle_dir / bundle.MANIFEST_FILE
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def test_it_round_trips_a_manifest(saved: Path) -> None:
    manifest = verify_bundle(saved)
    assert manifest.classes == ("normal", "abnormal")
    assert manifest.decision_threshold == 0.4
    assert manifest.features == CONFIG
    assert len(manifest.weights_sha256) == 64
    assert manifest.created_at
    assert (saved / "CARD.md").read_text() == "# card\n"
    assert read_manifest(saved) == manifest


def test_it_detects_tampered_weights(saved: Path) -> None:
    with (saved / bundle.WEIGHTS_FILE).open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match="checksum mismatch"):
        verify_bundle(saved)


def test_it_refuses_a_changed_feature_configuration(saved: Path) -> None:
    _edit_manifest(saved, feature_config={**CONFIG.to_dict(), "n_mels": 40})
    with pytest.raises(BundleError, match="fingerprint"):
        verify_bundle(saved)


def test_it_refuses_bundles_from_other_feature_code(saved: Path) -> None:
    _edit_manifest(saved, feature_code_version=99)
    with pytest.raises(BundleError, match="feature code version 99"):
        verify_bundle(saved)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ["normal"]}, "two or more"),
        ({"decision_threshold": 1.5}, "threshold"),
        ({"positive_class": "murmur"}, "positive class"),
        ({"surprise": 1}, "unknown keys"),
    ],
)
def test_it_explains_a_bad_manifest(saved: Path, changes: dict[str, object], message: str) -> None:
    _edit_manifest(saved, **changes)
    with pytest.raises(BundleError, match=message):
        verify_bundle(saved)


def test_it_explains_a_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        read_manifest(tmp_path)
    (tmp_path / bundle.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_it_packs_and_unpacks_a_bundle(saved: Path, tmp_path: Path) -> None:
    archive = io.BytesIO()
    pack_bundle(saved, archive)
    archive.seek(0)
    restored = unpack_bundle(archive, tmp_path / "restored")
    assert verify_bundle(restored) == verify_bundle(saved)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil"])
def test_it_refuses_path_traversal_in_archives(tmp_path: Path, name: str) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(name, b"payload")
    archive.seek(0)
    with pytest.raises(BundleError, match="unsafe path"):
        unpack_bundle(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_it_refuses_a_non_zip_archive(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a valid zip"):
        unpack_bundle(io.BytesIO(b"plain bytes"), tmp_path / "out")


def test_it_ships_verified_default_bundles() -> None:
    screening = verify_bundle(bundle.DEFAULT_SCREENING_BUNDLE)
    assert screening.classes == ("normal", "abnormal")
    assert screening.positive_class == "abnormal"
    multiclass = verify_bundle(bundle.DEFAULT_MULTICLASS_BUNDLE)
    assert set(multiclass.classes) == {"normal", "murmur", "extrastole", "extrahls", "artifact"}
    assert "RESEARCH USE ONLY" in (bundle.DEFAULT_MULTICLASS_BUNDLE / multiclass.card).read_text()
    total = sum(path.stat().st_size for path in bundle.BUNDLES_DIR.rglob("*") if path.is_file())
    assert total < 2_000_000
