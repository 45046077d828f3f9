"""Labelled recording collections (a folder with ``labels.csv``: ``path,label``).

Recordings are grouped by their source (the first folder of their path, or the
PASCAL set from ``metadata.csv``) so that evaluation can hold out whole sites.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.audio import DEFAULT_BAND_HZ, decode_audio
from ml.errors import AudioError
from ml.labels import LABEL_MAPS

LABELS_FILE = "labels.csv"
METADATA_FILE = "metadata.csv"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One labelled recording: ``path`` relative to the dataset root."""

    path: str
    label: str
    group: str
    patient: str = ""

    @property
    def subject(self) -> str:
        """Who was recorded: the patient id when the dataset names one, else the recording."""
        return self.patient or self.path


@dataclass(frozen=True)
class Dataset:
    """Decoded recordings with labels and groups (parallel sequences)."""

    root: Path
    entries: tuple[Entry, ...]
    samples: tuple[np.ndarray, ...]
    fingerprint: str

    def subset(self, keep: np.ndarray) -> Dataset:
        """The entries where boolean mask ``keep`` is true."""
        indices = np.flatnonzero(keep)
        return Dataset(
            root=self.root,
            entries=tuple(self.entries[i] for i in indices),
            samples=tuple(self.samples[i] for i in indices),
            fingerprint=self.fingerprint,
        )

    @property
    def labels(self) -> np.ndarray:
        """Label strings as an array."""
        return np.array([entry.label for entry in self.entries])

    @property
    def groups(self) -> np.ndarray:
        """Group names as an array."""
        return np.array([entry.group for entry in self.entries])

    @property
    def subjects(self) -> np.ndarray:
        """Patient (or recording) of every entry, prefixed by its source."""
        return np.array([f"{entry.group}/{entry.subject}" for entry in self.entries])


def read_entries(root: Path, *, label_map: str = "identity") -> list[Entry]:
    """Entries of ``root/labels.csv`` after mapping labels (mapped to None: dropped)."""
    mapping = LABEL_MAPS[label_map]
    groups, patients = _metadata_groups(root), _metadata_patients(root)
    with (root / LABELS_FILE).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    folders = {_first_folder(row["path"]) for row in rows}
    entries = []
    for row in rows:
        label = mapping.get(row["label"], row["label"]) if mapping else row["label"]
        if label is not None:
            # A dataset whose recordings all sit in one folder is one source, named after the dataset.
            folder = _first_folder(row["path"]) if len(folders) > 1 else root.name
            group = groups.get(row["path"]) or folder
            entries.append(
                Entry(path=row["path"], label=label, group=group, patient=patients.get(row["path"], ""))
            )
    return entries


def _first_folder(path: str) -> str:
    parts = Path(path).parts
    return parts[0] if len(parts) > 1 else "."


def _metadata_groups(root: Path) -> dict[str, str]:
    metadata = root / METADATA_FILE
    if not metadata.is_file():
        return {}
    with metadata.open(newline="", encoding="utf-8") as handle:
        return {
            row["path"]: f"set-{row['pascal_set']}" for row in csv.DictReader(handle) if row.get("pascal_set")
        }


def _metadata_patients(root: Path) -> dict[str, str]:
    metadata = root / METADATA_FILE
    if not metadata.is_file():
        return {}
    with metadata.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: row["patient_id"] for row in csv.DictReader(handle) if row.get("patient_id")}


def fingerprint_entries(root: Path, entries: Sequence[Entry]) -> str:
    """Hash of paths, labels and file sizes (16 hex chars): identifies the training data."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item.path):
        size = (root / entry.path).stat().st_size
        digest.update(f"{entry.path},{entry.label},{size}\n".encode())
    return digest.hexdigest()[:16]


def load_dataset(
    root: str | Path,
    *,
    sample_rate: int,
    label_map: str = "identity",
    min_duration_s: float = 2.0,
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ,
    cache_dir: Path | None = None,
) -> Dataset:
    """Decode every recording listed in ``root/labels.csv`` (undecodable ones are skipped).

    With ``cache_dir`` the decoded samples are kept in a ``.npz`` keyed by the
    data fingerprint and rate, so repeated runs skip decoding.
    """
    base = Path(root)
    entries = read_entries(base, label_map=label_map)
    fingerprint = fingerprint_entries(base, entries)
    cache = (
        None
        if cache_dir is None
        else cache_dir / f"{fingerprint}-{sample_rate}-{min_duration_s}-{band_hz[0]:g}-{band_hz[1]:g}.npz"
    )
    if cache is not None and cache.is_file():
        return _from_cache(base, entries, fingerprint, cache)
    kept, samples = [], []
    for entry in entries:
        try:
            audio = decode_audio(
                base / entry.path, target_rate=sample_rate, min_duration_s=min_duration_s, band_hz=band_hz
            )
        except AudioError as exc:
            log.warning("skipping %s: %s", entry.path, exc)
            continue
        kept.append(entry)
        samples.append(audio.samples)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"r{i}": wave for i, wave in enumerate(samples)}
        np.savez(cache, paths=np.array([e.path for e in kept]), **arrays)
    return Dataset(root=base, entries=tuple(kept), samples=tuple(samples), fingerprint=fingerprint)


def _from_cache(base: Path, entries: list[Entry], fingerprint: str, cache: Path) -> Dataset:
    with np.load(cache) as stored:
        paths = [str(path) for path in stored["paths"]]
        samples = tuple(stored[f"r{i}"] for i in range(len(paths)))
    by_path = {entry.path: entry for entry in entries}
    kept = tuple(by_path[path] for path in paths)
    return Dataset(root=base, entries=kept, samples=samples, fingerprint=fingerprint)
