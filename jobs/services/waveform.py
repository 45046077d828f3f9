"""The recording page's interactive waveform: peaks drawn by a worker, markers from the prediction.

A worker decodes the recording once (the web process never decodes audio) and
stores its envelope next to the plots: the minimum and maximum of each short bin
(``BINS_PER_SECOND``, fewer for very long recordings so the data stays under
``MAX_BINS``), quantised to signed bytes and base64-encoded, a few kilobytes per
minute of audio. The page fetches it with the prediction's heart sounds and
segments and draws the visible part per pixel, so zooming and panning never go
back to the server.
"""

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from jobs import storage
from jobs.models import ModelVersion, Prediction, Recording
from jobs.services import packs, queue, verdicts

logger = logging.getLogger(__name__)

REQUEST_DEDUP_SECONDS = 120
BINS_PER_SECOND = 200  # 5 ms: an S1 (about 120 ms) spans two dozen bins
MAX_BINS = 120_000  # 10 minutes at the full rate; 240 KB of peaks, 320 KB as base64
PEAK_LEVELS = 127  # int8 range used for the quantised envelope
# Part of the key: bumped when the stored format changes.
PEAKS_FORMAT = 1


@dataclass(frozen=True)
class Band:
    """The rate and band the waveform is decoded at: the model's features, as the overview plot."""

    sample_rate: int
    low_hz: float
    high_hz: float


def band_of(model_version: ModelVersion | None) -> Band:
    from ml.audio import DEFAULT_BAND_HZ, DEFAULT_RATE_HZ

    features = dict((model_version.manifest or {}).get("feature_config") or {}) if model_version else {}
    return Band(
        sample_rate=int(features.get("sample_rate", DEFAULT_RATE_HZ)),
        low_hz=float(features.get("band_low_hz", DEFAULT_BAND_HZ[0])),
        high_hz=float(features.get("band_high_hz", DEFAULT_BAND_HZ[1])),
    )


def peaks_key(recording: Recording, band: Band) -> str:
    name = f"peaks-{band.sample_rate}-{band.low_hz:g}-{band.high_hz:g}-v{PEAKS_FORMAT}.json"
    return storage.plot_key(recording.sha256, name)


@dataclass(frozen=True)
class WaveformState:
    """The stored peaks (None until a worker has drawn them) and whether they never will be."""

    peaks: dict[str, Any] | None
    failed: str = ""


def waveform_state(recording: Recording, model_version: ModelVersion | None) -> WaveformState:
    """The recording's stored peaks; asks a worker for them when they are missing."""
    if not recording.storage_key:
        return WaveformState(peaks=None, failed="This recording has no stored audio.")
    key = peaks_key(recording, band_of(model_version))
    try:
        stored = json.loads(storage.read_bytes(key))
    except FileNotFoundError:
        request_waveform(recording, model_version)
        return WaveformState(peaks=None)
    if stored.get("failed"):
        return WaveformState(peaks=None, failed=str(stored["failed"]))
    return WaveformState(peaks=stored)


def request_waveform(recording: Recording, model_version: ModelVersion | None) -> bool:
    """Send the task unless it was sent for the same peaks very recently (the page polls)."""
    band = band_of(model_version)
    if not cache.add(f"waveform:{peaks_key(recording, band)}", 1, REQUEST_DEDUP_SECONDS):
        return False
    version_id = model_version.pk if model_version else None
    queue.send(queue.WAVEFORM_TASK, [recording.pk, version_id])
    return True


def page_data(
    peaks: dict[str, Any], prediction: Prediction | None, *, model_version: ModelVersion | None
) -> dict[str, Any]:
    """What the page draws: the peaks, the heart sounds and segments the prediction found, and
    its probability per analysis window for one class (the screening class, against its threshold)."""
    segments = (prediction.segments if prediction else None) or {}
    shown, threshold = _timeline_class(prediction, model_version)
    return {
        **peaks,
        "ready": True,
        "s1_s": [float(onset) for onset in segments.get("s1_s") or []],
        "s2_s": [float(onset) for onset in segments.get("s2_s") or []],
        # Systole and diastole are shaded; the sounds themselves are drawn as markers at their onsets.
        "segments": [
            [str(state), float(start), float(end)]
            for state, start, end in segments.get("segments") or []
            if state in ("systole", "diastole")
        ],
        "timeline_class": shown,
        "threshold": threshold,
        "timeline": [
            [float(window["start_s"]), float(window["end_s"]), float(window["probabilities"].get(shown, 0.0))]
            for window in ((prediction.timeline if prediction else None) or [])
        ]
        if shown
        else [],
    }


def _timeline_class(
    prediction: Prediction | None, model_version: ModelVersion | None
) -> tuple[str | None, float | None]:
    if model_version is None:
        return None, None
    rule = verdicts.model_rule(model_version)
    if rule.positive is not None:
        return rule.positive, rule.threshold
    return (prediction.label or None) if prediction else None, None


# --- drawing (worker only) ----------------------------------------------------


def render_waveform(recording_id: int, model_version_id: int | None) -> str:
    """Decode one recording and store its peaks; returns the key written.

    Audio that cannot be decoded is stored as a failure, so the page stops
    waiting; storage errors propagate for the task to retry.
    """
    from ml.audio import decode_audio
    from ml.errors import AudioError

    recording = Recording.objects.get(pk=recording_id)
    model_version = ModelVersion.objects.filter(pk=model_version_id).first() if model_version_id else None
    band = band_of(model_version)
    key = peaks_key(recording, band)
    payload = packs.read_one(
        packs.span_of(recording.storage_key, recording.storage_offset, recording.size_bytes)
    )
    try:
        audio = decode_audio(
            payload, target_rate=band.sample_rate, band_hz=(band.low_hz, band.high_hz), min_duration_s=0.05
        )
    except AudioError as exc:
        logger.info("no waveform for recording %s: %s", recording_id, exc)
        storage.put_bytes(key, json.dumps({"failed": f"The recording cannot be drawn: {exc}"}).encode())
        return key
    stored = {
        "format": PEAKS_FORMAT,
        **envelope(audio.samples, sample_rate=audio.sample_rate),
        "band_hz": [band.low_hz, band.high_hz],
    }
    storage.put_bytes(key, json.dumps(stored, separators=(",", ":")).encode())
    return key


def envelope(samples: Any, *, sample_rate: int) -> dict[str, Any]:
    """Per-bin minimum and maximum of ``samples``, interleaved and quantised to int8.

    ``peaks`` decodes (base64) to ``2 * bins`` signed bytes: bin i's minimum at
    ``2 i`` and maximum at ``2 i + 1``, in units of ``scale / 127``; bin i starts
    at ``i / bins_per_second`` seconds.
    """
    import numpy as np

    values = np.asarray(samples, dtype=np.float64)
    duration_s = len(values) / sample_rate
    per_second = min(float(BINS_PER_SECOND), MAX_BINS / duration_s) if duration_s else BINS_PER_SECOND
    bins = max(1, min(len(values), MAX_BINS, int(np.ceil(duration_s * per_second))))
    starts = np.minimum((np.arange(bins) * sample_rate / per_second).astype(np.int64), len(values) - 1)
    low = np.minimum.reduceat(values, starts)
    high = np.maximum.reduceat(values, starts)
    scale = float(np.max(np.abs(values))) or 1.0
    pairs = np.empty(2 * bins, dtype=np.int8)
    pairs[0::2] = np.round(low / scale * PEAK_LEVELS).astype(np.int8)
    pairs[1::2] = np.round(high / scale * PEAK_LEVELS).astype(np.int8)
    return {
        "duration_s": round(duration_s, 4),
        "bins_per_second": per_second,
        "bins": bins,
        "scale": scale,
        "peaks": base64.b64encode(pairs.tobytes()).decode("ascii"),
    }
