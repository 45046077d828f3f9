"""Fixtures for the registry tests: people with roles, bundles good and broken, stored audio."""

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Membership, ModelVersion, Prediction, Recording
from ml.bundle import DEFAULT_SCREENING_BUNDLE, MANIFEST_FILE
from tests import factories
from tests.conftest import SAMPLES

SAMPLE_FILES = ("a0033.wav", "a0035.wav", "a0071.wav", "a0082.wav")


def member(username: str, organisation: Any, role: str) -> Any:
    membership = factories.MembershipFactory(user__username=username, organisation=organisation, role=role)
    return membership.user


@pytest.fixture
def north(db: None) -> Any:
    return factories.OrganisationFactory(name="North Clinic", slug="north")


@pytest.fixture
def south(db: None) -> Any:
    return factories.OrganisationFactory(name="South Clinic", slug="south")


@pytest.fixture
def researcher(north: Any) -> Any:
    return member("researcher", north, Membership.Role.RESEARCHER)


@pytest.fixture
def uploader(north: Any) -> Any:
    return member("uploader", north, Membership.Role.UPLOADER)


@pytest.fixture
def staff(db: None) -> Any:
    return factories.UserFactory(username="operator", is_staff=True)


def api_as(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def copy_bundle(tmp_path: Path, **manifest_changes: Any) -> Path:
    """The committed screening bundle, copied, with manifest values replaced."""
    target = tmp_path / "bundle"
    shutil.copytree(DEFAULT_SCREENING_BUNDLE, target)
    if manifest_changes:
        rewrite_manifest(target, **manifest_changes)
    return target


def rewrite_manifest(bundle: Path, **changes: Any) -> None:
    path = bundle / MANIFEST_FILE
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def zip_directory(bundle: Path, target: Path) -> Path:
    """Pack without checking, as someone with a broken bundle would."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(bundle.iterdir()):
            archive.write(path, path.name)
    return target


def store_samples(organisation: Any, model_version: ModelVersion, count: int = 4) -> list[Recording]:
    """Recordings of one upload batch whose audio (real samples) is in storage."""
    batch = factories.BatchFactory(organisation=organisation, model_version=model_version, status="completed")
    recordings = []
    for name in SAMPLE_FILES[:count]:
        data = (SAMPLES / name).read_bytes()
        key = storage.recording_key(_sha256(data))
        if not storage.exists(key):
            storage.put_bytes(key, data)
        recordings.append(
            factories.RecordingFactory(batch=batch, path=name, sha256=key.split("/")[1], storage_key=key)
        )
    return recordings


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def predict(
    recording: Recording, model_version: ModelVersion, label: str, **probabilities: float
) -> Prediction:
    probabilities = probabilities or {label: 0.9}
    return Prediction.objects.create(
        recording=recording,
        model_version=model_version,
        batch=recording.batch,
        label=label,
        probabilities=probabilities,
        confidence=probabilities.get(label, 0.9),
        quality="good",
        input_sha256=recording.sha256,
        feature_fingerprint="test",
    )


def recording_objects() -> int:
    """How many audio objects storage holds (either backend)."""
    if not storage.uses_s3():
        return len(default_storage.listdir("recordings")[1]) if default_storage.exists("recordings") else 0
    client, bucket = storage._s3_client(), storage._bucket()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="recordings/")
    return sum(page.get("KeyCount", 0) for page in pages)
