"""Model versions: registering bundles, the defaults, publishing, retiring, and local copies of bundles.

Looking versions up (the default, one by name, the listed ones) is
jobs.services.model_lookup, which the web process can import without ``ml``.

A bundle lives in storage as a zip; a worker unpacks it once into the model
cache, keyed by the zip's checksum, and loads it from there.

Registration checks a bundle in two steps. The cheap one (manifest, weights
checksum, feature configuration compatible with this code) runs wherever the
bundle arrives, the web process included. The smoke prediction on a committed
sample needs TensorFlow, so it runs only where a model may be loaded: in the
`register_model` command's own process, or in a worker for bundles uploaded
through the API, which wait in status `checking` until it passes.

Who sees a version: staff's and the platform's registrations are published to
every organisation; a researcher's belongs to their organisation until staff
publish it (access.visible_models). Each organisation may choose its own
default among the versions it can use; the global default serves the rest.
"""

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from jobs import storage
from jobs.models import ModelVersion, Organisation
from jobs.services import access, defaults, queue, reanalysis
from jobs.services.refusals import Refused
from ml.bundle import (
    DEFAULT_SCREENING_BUNDLE,
    Manifest,
    architecture_of,
    pack_bundle,
    unpack_bundle,
    verify_bundle,
)
from ml.errors import AudioError, BundleError

logger = logging.getLogger(__name__)

SMOKE_SAMPLE = Path(settings.BASE_DIR) / "samples" / "physionet" / "a0033.wav"
Status = ModelVersion.Status


class RegistrationRefused(Refused):
    """A bundle or a registry change that cannot be accepted; the message says why."""


# --- what staff alone may change (access.can_govern_models) ---------------------

GOVERNANCE_REFUSED = (
    "Only staff can change the default model or retire a version: they apply to every organisation."
)
GLOBAL_DEFAULT_REFUSED = (
    "Only staff can change the default model of every organisation. To choose your organisation's "
    'default, send {"organisation": "<slug>"}.'
)
PUBLISH_REFUSED = "Only staff can publish a version to every organisation."


# --- checking a bundle -------------------------------------------------------------


def check_bundle(bundle_dir: Path) -> Manifest:
    """Manifest, weights checksum and feature compatibility: cheap, no TensorFlow."""
    try:
        return verify_bundle(bundle_dir)
    except BundleError as exc:
        raise RegistrationRefused("invalid_bundle", exc.message) from exc


def smoke_test(bundle_dir: Path, sample: Path = SMOKE_SAMPLE) -> dict[str, Any]:
    """Load the model and classify a committed sample; raises RegistrationRefused when it cannot.

    Never call this in the web process: it imports TensorFlow.
    """
    from ml.inference import Engine

    started = time.perf_counter()
    try:
        engine = Engine.load(bundle_dir)
        found = engine.classify([engine.decode(sample)])[0]
    except (BundleError, AudioError) as exc:
        raise RegistrationRefused("smoke_test_failed", f"The smoke prediction failed: {exc}") from exc
    except (ValueError, OSError) as exc:
        # Weights that do not fit the declared architecture surface as these.
        message = f"The model could not be loaded or run ({type(exc).__name__}: {exc})"
        raise RegistrationRefused("smoke_test_failed", message) from exc
    if set(found.probabilities) != set(engine.classes):
        raise RegistrationRefused("smoke_test_failed", "The model's outputs do not match its classes")
    return {
        "sample": sample.name,
        "label": found.label,
        "probabilities": found.probabilities,
        "seconds": round(time.perf_counter() - started, 2),
        "passed": True,
    }


# --- registering -------------------------------------------------------------------


def register_bundle(
    bundle_dir: Path, *, make_default: bool, user: User | None = None, smoke: bool = True
) -> ModelVersion:
    """Check a bundle directory, store it packed and record it as an active version.

    With `smoke` the model is loaded and run on a sample in this process first
    (the management command; never the web process). Registering the same
    name+version with the same weights again returns the existing version.
    """
    manifest = check_bundle(bundle_dir)
    existing = _existing(manifest)
    if existing is not None:
        return _refresh_lite_export(existing, bundle_dir, manifest)
    result = smoke_test(bundle_dir) if smoke else {}
    version = _store(bundle_dir, manifest, status=Status.ACTIVE, user=user, smoke_result=result)
    if make_default and version.status == Status.ACTIVE and not version.is_default:
        version = set_default(version)
    return version


def register_upload(
    upload: IO[bytes], *, user: User, make_default: bool, organisation: Organisation | None = None
) -> ModelVersion:
    """A packed bundle sent to the API: checked now, smoke-tested by a worker.

    The version waits in `checking` (not offered, not usable) until the worker
    marks it active, and then, if asked, the default. A registration by
    someone other than staff belongs to `organisation` and stays unpublished.
    """
    with tempfile.TemporaryDirectory(prefix="bundle-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        try:
            unpack_bundle(upload, bundle_dir)
        except BundleError as exc:
            raise RegistrationRefused("invalid_bundle", exc.message) from exc
        manifest = check_bundle(bundle_dir)
        if _existing(manifest) is not None:
            raise RegistrationRefused(
                "already_registered", f"{manifest.name} {manifest.version} is already registered", status=409
            )
        published = access.is_staff(user)
        if not published and organisation is None:
            message = "Name the organisation the version belongs to."
            raise RegistrationRefused("organisation_required", message)
        version = _store(
            bundle_dir,
            manifest,
            status=Status.CHECKING,
            user=user,
            smoke_result={},
            organisation=organisation,
            published=published,
        )
    version_id = version.pk
    queue.send_after_commit(queue.SMOKE_TEST_TASK, [version_id, make_default])
    return version


def finish_check(version_id: int, *, make_default: bool) -> ModelVersion:
    """The worker's half of an API registration: smoke-test, then activate or reject."""
    version = ModelVersion.objects.get(pk=version_id)
    if version.status != Status.CHECKING:
        return version  # a second delivery of the task
    try:
        result = smoke_test(local_bundle_dir(version))
    except RegistrationRefused as exc:
        ModelVersion.objects.filter(pk=version.pk, status=Status.CHECKING).update(
            status=Status.REJECTED, smoke_test={"passed": False, "error": exc.message}
        )
        logger.warning("model %s rejected: %s", version.slug, exc.message)
        version.refresh_from_db()
        return version
    ModelVersion.objects.filter(pk=version.pk, status=Status.CHECKING).update(
        status=Status.ACTIVE, smoke_test=result
    )
    version.refresh_from_db()
    if make_default and version.status == Status.ACTIVE:
        version = set_default(version)
    return version


def _existing(manifest: Manifest) -> ModelVersion | None:
    """A version already registered under this name+version (a rejected one gives way)."""
    found = ModelVersion.objects.filter(name=manifest.name, version=manifest.version).first()
    if found is None:
        return None
    if found.status == Status.REJECTED and not found.predictions.exists() and not found.batches.exists():
        found.delete()
        return None
    same_weights = found.manifest.get("weights_sha256") == manifest.weights_sha256
    # A composite bundle names its members' weights too (verify_bundle checks them).
    if not same_weights or found.manifest.get("members", []) != manifest.members:
        raise RegistrationRefused(
            "already_registered",
            f"{manifest.name} {manifest.version} is already registered with other weights: "
            "give the new bundle a new version",
            status=409,
        )
    return found


def _refresh_lite_export(version: ModelVersion, bundle_dir: Path, manifest: Manifest) -> ModelVersion:
    """The same weights registered again with a new LiteRT export: store the newer bundle.

    The export is parity-checked against these weights before it is attached, so
    results do not change; workers serve it without TensorFlow (a third of the
    memory) once the version's bundle checksum moves to the new copy. Without
    this, a deployment registered before the export existed would keep serving
    with Keras after an upgrade.
    """
    if not manifest.lite_sha256 or version.manifest.get("lite_sha256") == manifest.lite_sha256:
        return version
    key, digest = _upload_packed(bundle_dir, manifest)
    ModelVersion.objects.filter(pk=version.pk).update(
        bundle_key=key, bundle_sha256=digest, manifest=manifest.to_dict()
    )
    logger.info("model %s: stored the bundle again with its LiteRT export", version.slug)
    version.refresh_from_db()
    return version


def _upload_packed(bundle_dir: Path, manifest: Manifest) -> tuple[str, str]:
    key = storage.model_key(manifest.name, manifest.version)
    with tempfile.TemporaryFile() as packed:
        pack_bundle(bundle_dir, packed)
        digest = _sha256_of(packed)
        storage.put(key, packed)
    return key, digest


def _store(
    bundle_dir: Path,
    manifest: Manifest,
    *,
    status: str,
    user: User | None,
    smoke_result: dict[str, Any],
    organisation: Organisation | None = None,
    published: bool = True,
) -> ModelVersion:
    key, digest = _upload_packed(bundle_dir, manifest)
    card_path = Path(bundle_dir) / manifest.card
    version = ModelVersion(
        name=manifest.name,
        version=manifest.version,
        architecture=architecture_of(bundle_dir, manifest),
        classes=list(manifest.classes),
        manifest=manifest.to_dict(),
        metrics=manifest.metrics,
        model_card=card_path.read_text(encoding="utf-8") if card_path.exists() else "",
        bundle_key=key,
        bundle_sha256=digest,
        feature_fingerprint=manifest.feature_fingerprint,
        status=status,
        smoke_test=smoke_result,
        registered_by=user if getattr(user, "is_authenticated", False) else None,
        organisation=organisation,
        published=published,
    )
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError:
        # Another process registered the same name+version at the same moment.
        return ModelVersion.objects.get(name=manifest.name, version=manifest.version)
    return version


# --- default and retirement --------------------------------------------------------


def set_default(version: ModelVersion) -> ModelVersion:
    """Make an active version the global default; waiting re-analyses start with it.

    Organisations with a default of their own keep it, and so do their waiting re-analyses.
    """
    if version.status != Status.ACTIVE:
        raise RegistrationRefused(
            "not_active", f"{version.slug} is {version.status}; only an active version can be the default"
        )
    if not version.published:
        # The global default reads every organisation's uploads, so every organisation must see it.
        raise RegistrationRefused(
            "not_published",
            f"{version.slug} is not published: publish it before making it the default",
            status=409,
        )
    try:
        with transaction.atomic():
            _lock_active(version)
            # The partial unique index allows one default: clear the old one first.
            ModelVersion.objects.filter(is_default=True).exclude(pk=version.pk).update(is_default=False)
            changed = ModelVersion.objects.filter(pk=version.pk, is_default=False).update(is_default=True)
            if changed:
                reanalysis.start_waiting_for_default(version)
    except IntegrityError as exc:
        raise RegistrationRefused(
            "conflict", "Another default was set at the same moment; try again", status=409
        ) from exc
    version.refresh_from_db()
    return version


def set_organisation_default(version: ModelVersion, organisation: Organisation) -> ModelVersion:
    """Make an active version the organisation's default; its waiting re-analyses start with it.

    Only a version the organisation may use (published, or its own) can be chosen.
    """
    if version.status != Status.ACTIVE:
        raise RegistrationRefused(
            "not_active",
            f"{version.slug} is {version.status}; only an active version can be a default",
            status=409,
        )
    if not access.can_use_model(version, organisation):
        raise RegistrationRefused(
            "not_published",
            f"{version.slug} is not published: until staff publish it, only its own organisation can use it",
            status=409,
        )
    with transaction.atomic():
        _lock_active(version)
        changed = (
            Organisation.objects.filter(pk=organisation.pk)
            .exclude(default_model=version)
            .update(default_model=version)
        )
        if changed:
            reanalysis.start_waiting_for_default(version, organisation=organisation)
    organisation.refresh_from_db()
    return version


def clear_organisation_default(version: ModelVersion, organisation: Organisation) -> ModelVersion:
    """The organisation stops using this version as its default: new batches take the global one."""
    theirs = Organisation.objects.filter(pk=organisation.pk, default_model=version)
    cleared = theirs.update(default_model=None)
    if not cleared:
        raise RegistrationRefused(
            "not_the_default", f"{version.slug} is not the default of {organisation.name}", status=409
        )
    organisation.refresh_from_db()
    return version


def publish(version: ModelVersion) -> ModelVersion:
    """Let every organisation see and use a researcher's version (staff decide)."""
    if version.status == Status.REJECTED:
        raise RegistrationRefused(
            "not_active", f"{version.slug} was rejected; a rejected version cannot be published", status=409
        )
    ModelVersion.objects.filter(pk=version.pk).update(published=True)
    version.refresh_from_db()
    return version


def retire(version: ModelVersion) -> ModelVersion:
    """Stop offering a version; its predictions and reports stay for the record."""
    with transaction.atomic():
        # Under the row lock every default choice takes too (_lock_active): one made at the
        # same moment either committed before, and is seen here, or sees the retirement.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        _refuse_retiring_a_default(locked)
        ModelVersion.objects.filter(pk=version.pk).update(status=Status.RETIRED)
    version.refresh_from_db()
    return version


def _refuse_retiring_a_default(version: ModelVersion) -> None:
    if version.is_default:
        raise RegistrationRefused(
            "is_default", f"{version.slug} is the default: make another version the default first", status=409
        )
    users = defaults.organisations_using(version)
    if users:
        names = ", ".join(organisation.name for organisation in users)
        raise RegistrationRefused(
            "is_organisation_default",
            f"{version.slug} is the default of {names}: they (or staff) must choose another default "
            "or clear theirs first",
            status=409,
        )


def _lock_active(version: ModelVersion) -> None:
    """Lock the version's row for the rest of the transaction; refuse it if it is no longer active.

    Choosing a default and retiring take this lock, so a version cannot be retired
    while it is being made someone's default and end up a retired default.
    """
    status = ModelVersion.objects.select_for_update().values_list("status", flat=True).get(pk=version.pk)
    if status != Status.ACTIVE:
        raise RegistrationRefused(
            "not_active",
            f"{version.slug} was {status} at the same moment; it cannot be a default",
            status=409,
        )


def ensure_default_model(bundle_dir: Path = DEFAULT_SCREENING_BUNDLE) -> tuple[ModelVersion, bool]:
    """Register the committed screening bundle as the default when no default exists.

    No smoke prediction here: the committed bundle is exercised by the ml tests,
    and this runs at every start-up. When the default is the committed bundle's
    name+version, a LiteRT export added to it since is stored too; when it is
    another version of the same model, the log says how to serve the shipped one.
    """
    current = ModelVersion.objects.filter(is_default=True).first()
    if current is not None:
        committed = check_bundle(bundle_dir)
        if (current.name, current.version) == (committed.name, committed.version):
            try:
                _existing(committed)  # refuses other weights under the same version
            except RegistrationRefused as exc:
                # Keep serving what is registered.
                logger.warning("the committed bundle was not stored: %s", exc.message)
            else:
                current = _refresh_lite_export(current, bundle_dir, committed)
        elif current.name == committed.name:
            # Changing the default changes the results of new uploads: an
            # operator's decision, so start-up only says how.
            logger.warning(
                "the default is %s; this release ships %s-%s. To serve it: "
                "manage.py register_model %s --default; then lubdub reanalyze --analysed-by %s "
                "re-reads the recordings the earlier version analysed",
                current.slug,
                committed.name,
                committed.version,
                bundle_dir,
                current.slug,
            )
        return current, False
    version = register_bundle(bundle_dir, make_default=False, smoke=False)
    return set_default(version), True


# --- bundles on a worker's disk ----------------------------------------------------


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
