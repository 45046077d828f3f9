"""Versioned model bundles: a directory with weights, a manifest and a model card.

A bundle is everything needed to reproduce a prediction: the ordered classes,
the feature configuration (and its fingerprint), the window and aggregation
settings, the decision threshold, the metrics it was released with, a fingerprint
of its training data and the checksum of its weights. This module never imports
TensorFlow, so the web process can list and check bundles cheaply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ml import __version__
from ml.errors import BundleError
from ml.features import FEATURE_CODE_VERSION, FeatureConfig

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "CARD.md"
LITE_FILE = "model.tflite"
MANIFEST_FORMAT = 1
BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
DEFAULT_SCREENING_BUNDLE = BUNDLES_DIR / "screening-v3.1"
DEFAULT_MULTICLASS_BUNDLE = BUNDLES_DIR / "pascal-multiclass-v1"
MAX_ARCHIVE_MEMBERS = 32
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
HASH_CHUNK_BYTES = 1 << 20
# What a member bundle's folder name may hold: one plain path component.
MEMBER_CHARACTERS = "A-Za-z0-9._-"
MEMBER_PATH = re.compile(f"[{MEMBER_CHARACTERS}]+")


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds and how to use it (``manifest.json``).

    ``decision_threshold`` applies to the probability of ``positive_class`` for
    two-class models; multi-class models take the most probable class.
    ``aggregation`` says how window probabilities become a recording's ("mean").
    """

    name: str
    version: str
    architecture: str
    classes: tuple[str, ...]
    sample_rate: int
    feature_config: dict[str, Any]
    feature_fingerprint: str
    model_config: dict[str, Any]
    decision_threshold: float = 0.5
    positive_class: str | None = None
    aggregation: str = "mean"
    # Bundles made before short recordings were supported say 2.0 in their manifest.
    min_duration_s: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data_fingerprint: str = ""
    code_version: str = __version__
    feature_code_version: int = FEATURE_CODE_VERSION
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    # A float32 TensorFlow Lite export that passed the parity check against
    # these weights (``python -m ml export``); empty when there is none.
    lite_file: str = ""
    lite_sha256: str = ""
    # ``ml.calibration.Calibration.to_dict()``: Platt scaling fitted on sources the
    # model never trained on, the ``uncertain`` margin and the batch-shift reference.
    # Empty: probabilities are the model's own and ``decision_threshold`` applies.
    calibration: dict[str, Any] = field(default_factory=dict)
    # Further bundles inside this one (``{"path": <sub-folder>, "weight": w, "weights_sha256":
    # <the member's>}``, so that the manifest pins its members' weights) that score the
    # same recordings from other features: a recording's probability is the weighted mean of
    # every model's log-odds (this one weighs what the members leave), and ``calibration``
    # applies to that mean. Two-class bundles only; members carry no members of their own.
    members: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    card: str = CARD_FILE
    format: int = MANIFEST_FORMAT

    @property
    def features(self) -> FeatureConfig:
        """The feature configuration as an object."""
        return FeatureConfig.from_dict(self.feature_config)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (classes as a list)."""
        values = dataclasses.asdict(self)
        values["classes"] = list(self.classes)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Manifest:
        """Build from a parsed ``manifest.json``; raises BundleError on missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise BundleError(f"manifest has unknown keys {unknown}")
        try:
            manifest = cls(**{**values, "classes": tuple(values["classes"])})
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest is missing required keys ({exc})") from exc
        return manifest


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read ``manifest.json`` of a bundle without checking its weights."""
    path = Path(bundle_dir) / MANIFEST_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{path} not found: is {bundle_dir} a model bundle?") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise BundleError(f"{path} must hold a JSON object")
    return Manifest.from_dict(values)


def verify_bundle(bundle_dir: str | Path) -> Manifest:
    """Read a manifest and check weights checksum and feature compatibility."""
    manifest = read_manifest(bundle_dir)
    _check_format(manifest)
    _check_classes(manifest)
    _check_features(manifest)
    _check_weights(Path(bundle_dir), manifest)
    _check_lite(Path(bundle_dir), manifest)
    _check_member_bundles(bundle_dir, manifest)
    return manifest


def _check_member_bundles(bundle_dir: str | Path, manifest: Manifest) -> None:
    """Verify each member bundle of a composite bundle.

    Raises BundleError when a member is missing, invalid, nested, weighted outside (0, 1)
    together with the others, or scores other classes or audio than the bundle itself
    (every model reads the same decoded recording).
    """
    if not manifest.members:
        return
    if manifest.positive_class is None or len(manifest.classes) != 2:
        raise BundleError(f"bundle {manifest.name}: only two-class bundles can have members")
    total = 0.0
    for entry in manifest.members:
        path, weight = entry.get("path"), entry.get("weight")
        if not isinstance(path, str) or not MEMBER_PATH.fullmatch(path) or path in {".", ".."}:
            raise BundleError(f"bundle {manifest.name}: member path {path!r} must be one folder name")
        if not isinstance(weight, int | float) or not 0.0 < weight < 1.0:
            raise BundleError(f"bundle {manifest.name}: member {path} needs a weight between 0 and 1")
        member_dir = Path(bundle_dir) / path
        member = verify_bundle(member_dir)
        if member.members:
            raise BundleError(f"bundle {manifest.name}: member {path} has members of its own")
        if entry.get("weights_sha256") != member.weights_sha256:
            raise BundleError(
                f"bundle {manifest.name}: member {path} holds other weights than the bundle names "
                "(the member was changed or replaced)"
            )
        _check_member_fits(manifest, member, path)
        total += weight
    if total >= 1.0:
        raise BundleError(f"bundle {manifest.name}: the members' weights must add up to less than 1")


def member_dirs(bundle_dir: str | Path, manifest: Manifest) -> list[tuple[Path, float]]:
    """A composite bundle's member folders and weights, as its manifest names them.

    Unchecked: for a manifest ``verify_bundle`` returned, which has checked every member.
    """
    return [(Path(bundle_dir) / entry["path"], float(entry["weight"])) for entry in manifest.members]


def architecture_of(bundle_dir: str | Path, manifest: Manifest) -> str:
    """The bundle's architecture, with its members' for a composite (``gru + cnn_gru``)."""
    members = [read_manifest(member_dir).architecture for member_dir, _ in member_dirs(bundle_dir, manifest)]
    return " + ".join([manifest.architecture, *members])


def _check_member_fits(manifest: Manifest, member: Manifest, path: str) -> None:
    own, theirs = manifest.features, member.features
    if member.classes != manifest.classes or member.positive_class != manifest.positive_class:
        raise BundleError(f"bundle {manifest.name}: member {path} scores other classes")
    if (theirs.sample_rate, theirs.band_hz) != (own.sample_rate, own.band_hz):
        raise BundleError(
            f"bundle {manifest.name}: member {path} reads audio at {theirs.sample_rate} Hz, "
            f"{theirs.band_hz[0]:g}-{theirs.band_hz[1]:g} Hz; the bundle decodes at {own.sample_rate} Hz, "
            f"{own.band_hz[0]:g}-{own.band_hz[1]:g} Hz"
        )
    if member.min_duration_s > manifest.min_duration_s:
        raise BundleError(f"bundle {manifest.name}: member {path} needs longer recordings than the bundle")


def attach_lite(bundle_dir: str | Path, flatbuffer: bytes) -> Manifest:
    """Store a parity-checked float32 export in the bundle and name it in the manifest."""
    target = Path(bundle_dir)
    manifest = verify_bundle(target)
    (target / LITE_FILE).write_bytes(flatbuffer)
    written = dataclasses.replace(
        manifest, lite_file=LITE_FILE, lite_sha256=hashlib.sha256(flatbuffer).hexdigest()
    )
    text = json.dumps(written.to_dict(), indent=2, sort_keys=True) + "\n"
    (target / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return written


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(
    bundle_dir: str | Path,
    *,
    manifest: Manifest,
    weights_path: Path,
    card_text: str,
    extra_files: dict[str, Path] | None = None,
) -> Manifest:
    """Write a bundle: copy weights, fill checksum and date, write manifest and card.

    ``extra_files`` maps names inside the bundle to files to copy (plots, metrics).
    Returns the manifest as written.
    """
    target = Path(bundle_dir)
    target.mkdir(parents=True, exist_ok=True)
    weights_target = target / manifest.weights_file
    if weights_path.resolve() != weights_target.resolve():
        shutil.copyfile(weights_path, weights_target)
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, target / name)
    (target / manifest.card).write_text(card_text, encoding="utf-8")
    written = dataclasses.replace(
        manifest,
        weights_sha256=sha256_file(weights_target),
        created_at=manifest.created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        feature_fingerprint=manifest.features.fingerprint(),
    )
    text = json.dumps(written.to_dict(), indent=2, sort_keys=True) + "\n"
    (target / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return written


def pack_bundle(bundle_dir: str | Path, fileobj: IO[bytes]) -> None:
    """Write the bundle directory as a zip archive (regular files only) to ``fileobj``."""
    root = Path(bundle_dir)
    verify_bundle(root)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(root).as_posix())


def unpack_bundle(fileobj: IO[bytes], dest_dir: str | Path) -> Path:
    """Extract a packed bundle into ``dest_dir``, refusing unsafe members; returns the dir.

    Members with absolute paths, ``..`` parts, symlinks, too many members or too
    many bytes raise BundleError; the result is verified before it is returned.
    """
    target = Path(dest_dir)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            members = archive.infolist()
            _check_members(members)
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                if not member.is_dir():
                    destination = target.joinpath(*PurePosixPath(member.filename).parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as source, destination.open("wb") as sink:
                        shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"the bundle archive is not a valid zip ({exc})") from exc
    verify_bundle(target)
    return target


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise BundleError(f"bundle archive has {len(members)} members (max {MAX_ARCHIVE_MEMBERS})")
    if sum(member.file_size for member in members) > MAX_ARCHIVE_BYTES:
        raise BundleError(f"bundle archive expands beyond {MAX_ARCHIVE_BYTES} bytes")
    for member in members:
        parts = PurePosixPath(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in member.filename:
            raise BundleError(f"unsafe path in bundle archive: {member.filename!r}")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise BundleError(f"symlink in bundle archive: {member.filename!r}")


def _check_format(manifest: Manifest) -> None:
    if manifest.format != MANIFEST_FORMAT:
        raise BundleError(
            f"bundle {manifest.name} uses manifest format {manifest.format}; "
            f"this code reads format {MANIFEST_FORMAT}"
        )


def _check_classes(manifest: Manifest) -> None:
    if len(manifest.classes) < 2 or len(set(manifest.classes)) != len(manifest.classes):
        raise BundleError(f"bundle {manifest.name} needs two or more distinct classes")
    if manifest.positive_class is not None and manifest.positive_class not in manifest.classes:
        raise BundleError(f"positive class {manifest.positive_class!r} is not among the classes")
    if not 0.0 <= manifest.decision_threshold <= 1.0:
        raise BundleError(f"decision threshold {manifest.decision_threshold} is outside [0, 1]")


def _check_features(manifest: Manifest) -> None:
    if manifest.feature_code_version != FEATURE_CODE_VERSION:
        raise BundleError(
            f"bundle {manifest.name} was trained with feature code version "
            f"{manifest.feature_code_version}, this code computes version {FEATURE_CODE_VERSION}: "
            "retrain or use a matching release"
        )
    try:
        config = manifest.features
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle {manifest.name} has an invalid feature configuration ({exc})") from exc
    if config.fingerprint() != manifest.feature_fingerprint:
        raise BundleError(
            f"bundle {manifest.name}: feature fingerprint {manifest.feature_fingerprint} does not "
            f"match its configuration ({config.fingerprint()} with this code)"
        )
    if config.sample_rate != manifest.sample_rate:
        raise BundleError(
            f"bundle {manifest.name}: sample rate {manifest.sample_rate} Hz disagrees with "
            f"its feature configuration ({config.sample_rate} Hz)"
        )


def _check_lite(bundle_dir: Path, manifest: Manifest) -> None:
    if not manifest.lite_file:
        return
    lite = bundle_dir / manifest.lite_file
    if not lite.is_file():
        raise BundleError(f"bundle {manifest.name}: TensorFlow Lite file {lite} is missing")
    if sha256_file(lite) != manifest.lite_sha256:
        raise BundleError(
            f"bundle {manifest.name}: TensorFlow Lite checksum mismatch: the file was changed or corrupted"
        )


def _check_weights(bundle_dir: Path, manifest: Manifest) -> None:
    weights = bundle_dir / manifest.weights_file
    if not weights.is_file():
        raise BundleError(f"bundle {manifest.name}: weights file {weights} is missing")
    actual = sha256_file(weights)
    if actual != manifest.weights_sha256:
        raise BundleError(
            f"bundle {manifest.name}: weights checksum mismatch "
            f"(manifest {manifest.weights_sha256[:12]}..., file {actual[:12]}...): "
            "the weights were changed or corrupted"
        )
