"""Model versions: the registered default, look-up by name, and local copies of bundles.

A bundle lives in storage as a zip; a worker unpacks it once into the model
cache, keyed by the zip's checksum, and loads it from there.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from jobs import storage
from jobs.models import ModelVersion
from ml.bundle import DEFAULT_SCREENING_BUNDLE, pack_bundle, read_manifest, unpack_bundle, verify_bundle


class UnknownModel(LookupError):
    pass


def default_model() -> ModelVersion:
    found = ModelVersion.objects.filter(is_default=True, status=ModelVersion.Status.ACTIVE).first()
    if found is None:
        raise UnknownModel("No default model is registered: run 'manage.py ensure_default_model'")
    return found


def resolve_model(reference: str | None) -> ModelVersion:
    """The default model, or the active one named `name-version`, `version` or by id."""
    if not reference:
        return default_model()
    active = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE)
    for candidate in active:
        if reference in (candidate.slug, candidate.version, str(candidate.pk)):
            return candidate
    raise UnknownModel(f"No active model version called {reference!r}")


def register_bundle(bundle_dir: Path, *, make_default: bool, user: Any = None) -> ModelVersion:
    """Pack a bundle into storage and record it; an existing name+version is returned as is."""
    manifest = verify_bundle(bundle_dir)
    existing = ModelVersion.objects.filter(name=manifest.name, version=manifest.version).first()
    if existing is not None:
        return existing
    key = storage.model_key(manifest.name, manifest.version)
    with tempfile.TemporaryFile() as packed:
        pack_bundle(bundle_dir, packed)
        digest = _sha256_of(packed)
        storage.put(key, packed)
    card_path = Path(bundle_dir) / manifest.card
    version = ModelVersion(
        name=manifest.name,
        version=manifest.version,
        architecture=manifest.architecture,
        classes=list(manifest.classes),
        manifest=manifest.to_dict(),
        metrics=manifest.metrics,
        model_card=card_path.read_text(encoding="utf-8") if card_path.exists() else "",
        bundle_key=key,
        bundle_sha256=digest,
        feature_fingerprint=manifest.feature_fingerprint,
        is_default=make_default,
        registered_by=user,
    )
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError:
        # Another process registered it (or a default) at the same moment.
        return ModelVersion.objects.get(name=manifest.name, version=manifest.version)
    return version


def ensure_default_model(bundle_dir: Path = DEFAULT_SCREENING_BUNDLE) -> tuple[ModelVersion, bool]:
    """Register the committed screening bundle as the default when no default exists."""
    current = ModelVersion.objects.filter(is_default=True).first()
    if current is not None:
        return current, False
    manifest = read_manifest(bundle_dir)
    existing = ModelVersion.objects.filter(name=manifest.name, version=manifest.version).first()
    if existing is not None:
        ModelVersion.objects.filter(pk=existing.pk).update(is_default=True)
        existing.refresh_from_db()
        return existing, True
    return register_bundle(bundle_dir, make_default=True), True


def local_bundle_dir(model_version: ModelVersion) -> Path:
    """An unpacked, verified copy of the version's bundle in the local model cache."""
    cache: Path = settings.LUBDUB_MODEL_CACHE
    target = cache / (model_version.bundle_sha256 or model_version.slug)
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    try:
        with tempfile.TemporaryFile() as packed:
            for block in storage.iter_chunks(model_version.bundle_key):
                packed.write(block)
            packed.seek(0)
            unpack_bundle(packed, staging / "bundle")
        # Several worker processes may race here; the first rename wins.
        try:
            os.rename(staging / "bundle", target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _sha256_of(handle: Any) -> str:
    handle.seek(0)
    digest = hashlib.sha256()
    while block := handle.read(storage.READ_BLOCK):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()
