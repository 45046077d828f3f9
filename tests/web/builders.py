"""Rows for the page tests: a batch with predictions, labels and reports."""

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.utils import timezone

from jobs import storage
from jobs.models import Analysis, Batch, ModelVersion, Prediction, Recording
from tests import factories

SCREENING_MANIFEST = {"positive_class": "abnormal", "decision_threshold": 0.5}


def screening_model(**fields: object) -> ModelVersion:
    defaults = {"classes": ["normal", "abnormal"], "manifest": SCREENING_MANIFEST}
    return factories.ModelVersionFactory(**{**defaults, **fields})


def timeline(duration_s: float, *, abnormal: float, window_s: float = 3.0, hop_s: float = 1.5) -> list[dict]:
    windows = []
    start = 0.0
    position = 0
    while start + window_s <= duration_s + 1e-9:
        wobble = 0.25 * math.sin(position * 1.3)
        p = min(max(abnormal + wobble, 0.01), 0.99)
        windows.append(
            {
                "start_s": round(start, 3),
                "end_s": round(start + window_s, 3),
                "probabilities": {"normal": 1 - p, "abnormal": p},
            }
        )
        start += hop_s
        position += 1
    return windows


def store_audio(path: Path) -> tuple[str, str, int]:
    """Put a real recording into storage the way ingest does; returns key, sha, size."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key = storage.recording_key(sha)
    storage.put_bytes(key, data)
    return key, sha, len(data)


def finished_batch(
    organisation: object,
    user: object,
    *,
    files: list[Path],
    labels: dict[str, str] | None = None,
    model_version: ModelVersion | None = None,
    name: str = "Clinic week 12",
) -> Batch:
    """A completed batch whose recordings are real audio in storage, with predictions."""
    model_version = model_version or screening_model()
    batch = factories.BatchFactory(
        organisation=organisation,
        created_by=user,
        name=name,
        model_version=model_version,
        status=Batch.Status.COMPLETED,
        total_count=len(files),
        done_count=len(files),
        started_at=timezone.now(),
        finished_at=timezone.now(),
        upload_name="week12.zip",
    )
    labels = labels or {}
    for index, path in enumerate(files):
        key, sha, size = store_audio(path)
        recording = factories.RecordingFactory(
            batch=batch,
            path=f"clinic/{path.name}",
            storage_key=key,
            sha256=sha,
            size_bytes=size,
            sample_rate=2000,
            channels=1,
            duration_s=20.0,
            label=labels.get(path.name, ""),
        )
        Analysis.objects.create(batch=batch, recording=recording, status=Analysis.Status.DONE)
        abnormal = [0.82, 0.18, 0.64, 0.35][index % 4]
        label = "abnormal" if abnormal >= 0.5 else "normal"
        Prediction.objects.create(
            recording=recording,
            model_version=model_version,
            batch=batch,
            label=label,
            probabilities={"normal": 1 - abnormal, "abnormal": abnormal},
            confidence=max(abnormal, 1 - abnormal),
            timeline=timeline(20.0, abnormal=abnormal),
            quality=["good", "good", "poor", "good"][index % 4],
            quality_reasons=[] if index % 4 != 2 else ["20% of the recording is silent"],
            heart_rate_bpm=[72.0, 88.5, None, 64.2][index % 4],
            input_sha256=sha,
            feature_fingerprint="f" * 64,
        )
    return batch


def rejected_recording(batch: Batch, path: str, message: str) -> Recording:
    return factories.RecordingFactory(
        batch=batch,
        path=path,
        status=Recording.Status.REJECTED,
        storage_key="",
        sha256="",
        error_code="not_audio",
        error_message=message,
    )


def completed_batch(organisation: object, user: object, **fields: Any) -> Batch:
    """A completed batch of the screening model, with no recordings yet."""
    return factories.BatchFactory(
        organisation=organisation,
        created_by=user,
        model_version=screening_model(),
        status=Batch.Status.COMPLETED,
        finished_at=timezone.now(),
        **fields,
    )


def bulk_recordings(batch: Batch, paths: Iterable[str], *, predicted: bool = True) -> list[Recording]:
    """Many recordings of a batch in one insert and, when predicted, a prediction for each in a
    second (normal, p(abnormal) 0.2, good quality): the rows of the long-table tests."""
    recordings = Recording.objects.bulk_create(
        Recording(batch=batch, organisation=batch.organisation, path=path, sha256=f"{index:064x}")
        for index, path in enumerate(paths)
    )
    if predicted:
        Prediction.objects.bulk_create(
            Prediction(
                recording=recording,
                batch=batch,
                model_version=batch.model_version,
                label="normal",
                decision="normal",
                probabilities={"normal": 0.8, "abnormal": 0.2},
                raw_probability=0.2,
                confidence=0.8,
                quality="good",
                input_sha256=recording.sha256,
                feature_fingerprint="f" * 64,
            )
            for recording in recordings
        )
    return recordings
