"""Recording plots: drawn once by a worker, cached in storage, served by the pages.

This module keeps their state (which images exist, where), the requests to
draw them and what they are drawn from; ml.plots draws them from arrays.
The overview (waveform with the S1/S2 heart sounds the segmentation found, and
the model's per-window probabilities under it) depends on the audio and the
model version; the spectrogram on the audio only. Both are keyed by the
audio's checksum, so a recording uploaded twice is drawn once. Drawing needs
the decoded audio, so it happens in a worker; the web process only checks
whether the images exist, asks for them, and reads them.
"""

import io
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from jobs import storage
from jobs.models import ModelVersion, Prediction, Recording
from jobs.services import packs, queue, verdicts
from ml import plots as drawing

logger = logging.getLogger(__name__)

# A render request is sent at most once per this window per image set, however
# often the page polls; the task itself is safe to run twice.
REQUEST_DEDUP_SECONDS = 120
LISTEN_MIN_RATE_HZ = 8000
# Part of the overview's key: bumped when the drawing changes, so images cached
# before (without the S1/S2 markers; 2: a waveform cut short of the recording's
# end) are drawn again instead of served.
OVERVIEW_DRAWING = 3


@dataclass(frozen=True)
class PlotSet:
    """Where one recording's images live and whether they are there yet."""

    overview_key: str | None
    spectrogram_key: str
    listen_key: str
    failure_key: str

    @property
    def keys(self) -> dict[str, str]:
        keys = {"spectrogram": self.spectrogram_key, "listen": self.listen_key}
        if self.overview_key:
            keys["overview"] = self.overview_key
        return keys


def plot_set(recording: Recording, model_version: ModelVersion | None) -> PlotSet:
    slug = model_version.slug if model_version else None
    return PlotSet(
        overview_key=(
            storage.plot_key(recording.sha256, f"overview-{slug}-v{OVERVIEW_DRAWING}.png") if slug else None
        ),
        spectrogram_key=storage.plot_key(recording.sha256, "spectrogram.png"),
        listen_key=storage.plot_key(recording.sha256, "listen.wav"),
        failure_key=storage.plot_key(recording.sha256, "failed.txt"),
    )


@dataclass(frozen=True)
class PlotState:
    ready: bool
    failed: bool
    available: list[str]


def plot_state(recording: Recording, model_version: ModelVersion | None) -> PlotState:
    """Which images exist; asks a worker to draw the missing ones."""
    if not recording.storage_key:
        return PlotState(ready=False, failed=True, available=[])
    plots = plot_set(recording, model_version)
    available = [name for name, key in plots.keys.items() if storage.exists(key)]
    if len(available) == len(plots.keys):
        return PlotState(ready=True, failed=False, available=available)
    if storage.exists(plots.failure_key):
        return PlotState(ready=False, failed=True, available=available)
    request_plots(recording, model_version)
    return PlotState(ready=False, failed=False, available=available)


def request_plots(recording: Recording, model_version: ModelVersion | None) -> bool:
    """Send the render task unless one was sent for the same images very recently."""
    version_id = model_version.pk if model_version else None
    if not cache.add(f"plots:{recording.sha256}:{version_id}", 1, REQUEST_DEDUP_SECONDS):
        return False
    queue.send(queue.PLOTS_TASK, [recording.pk, version_id])
    return True


def listening_key(recording: Recording) -> str | None:
    """Storage key of the browser-playable copy, once a worker has made it."""
    if not recording.storage_key:
        return None
    key = plot_set(recording, None).listen_key
    return key if storage.exists(key) else None


def read_plot(recording: Recording, model_version: ModelVersion | None, name: str) -> bytes:
    key = plot_set(recording, model_version).keys.get(name)
    if key is None:
        raise FileNotFoundError(name)
    return storage.read_bytes(key)


# --- drawing (worker only) ----------------------------------------------------


def render_recording_plots(recording_id: int, model_version_id: int | None) -> list[str]:
    """Draw and store the images of one recording; returns the keys written.

    Audio that cannot be decoded is a permanent failure, recorded in storage so
    the page stops waiting; storage errors propagate for the task to retry.
    """
    from ml.errors import AudioError

    recording = Recording.objects.get(pk=recording_id)
    model_version = ModelVersion.objects.filter(pk=model_version_id).first() if model_version_id else None
    plots = plot_set(recording, model_version)
    payload = packs.read_one(
        packs.span_of(recording.storage_key, recording.storage_offset, recording.size_bytes)
    )
    try:
        audio = _decode(payload, model_version)
        listening = listening_copy(payload)
    except AudioError as exc:
        storage.put_bytes(plots.failure_key, f"{exc.code}: {exc}".encode())
        logger.info("no plots for recording %s: %s", recording_id, exc)
        return [plots.failure_key]
    prediction = (
        Prediction.objects.filter(recording=recording, model_version=model_version).first()
        if model_version
        else None
    )
    written = []
    if plots.overview_key:
        storage.put_bytes(plots.overview_key, draw_overview(audio, prediction, model_version))
        written.append(plots.overview_key)
    storage.put_bytes(plots.spectrogram_key, draw_spectrogram(audio))
    storage.put_bytes(plots.listen_key, listening)
    written += [plots.spectrogram_key, plots.listen_key]
    return written


def _features(model_version: ModelVersion | None) -> tuple[int, tuple[float, float]]:
    """Sample rate and band the model's features use (the ml defaults otherwise)."""
    from ml.audio import DEFAULT_BAND_HZ, DEFAULT_RATE_HZ

    features = dict((model_version.manifest or {}).get("feature_config") or {}) if model_version else {}
    band = (
        float(features.get("band_low_hz", DEFAULT_BAND_HZ[0])),
        float(features.get("band_high_hz", DEFAULT_BAND_HZ[1])),
    )
    return int(features.get("sample_rate", DEFAULT_RATE_HZ)), band


def _decode(payload: bytes, model_version: ModelVersion | None) -> Any:
    from ml.audio import decode_audio

    # Plots show what the model hears, so decode with its rate and band, but
    # draw even recordings too short to classify.
    rate, band = _features(model_version)
    return decode_audio(payload, target_rate=rate, band_hz=band, min_duration_s=0.05)


def listening_copy(payload: bytes) -> bytes:
    """The recording as 16-bit mono WAV at a rate every browser plays.

    Browsers refuse audio below 3 kHz (PhysioNet recordings are 2 kHz) and
    many formats besides WAV, so the player gets this copy, not the upload.
    """
    import numpy as np
    import soundfile

    from ml import errors
    from ml.audio import resample

    try:
        frames, rate = soundfile.read(io.BytesIO(payload), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise errors.AudioError(errors.UNDECODABLE, "the recording cannot be decoded") from exc
    mono = frames.mean(axis=1)
    if rate < LISTEN_MIN_RATE_HZ:
        mono = resample(mono, source_rate=rate, target_rate=LISTEN_MIN_RATE_HZ)
        rate = LISTEN_MIN_RATE_HZ
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak > 1.0:
        mono = mono / peak
    buffer = io.BytesIO()
    soundfile.write(buffer, mono, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def draw_overview(audio: Any, prediction: Prediction | None, model_version: ModelVersion | None) -> bytes:
    return drawing.draw_overview(audio.samples, _overview(audio, prediction, model_version))


def overview_figure(audio: Any, prediction: Prediction | None, model_version: ModelVersion | None) -> Any:
    """The overview as a matplotlib figure: waveform (with heart sounds) over the window probabilities."""
    return drawing.overview_figure(audio.samples, _overview(audio, prediction, model_version))


def _overview(
    audio: Any, prediction: Prediction | None, model_version: ModelVersion | None
) -> drawing.Overview:
    shown, threshold = screened_classes(model_version)
    return drawing.Overview(
        sample_rate=audio.sample_rate,
        duration_s=audio.duration_s,
        band_hz=_features(model_version)[1],
        heart_sounds=heart_sounds(prediction),
        windows=timeline_windows(prediction),
        shown=shown,
        threshold=threshold,
    )


def heart_sounds(prediction: Prediction | None) -> drawing.HeartSounds | None:
    """The prediction's segmented heart sounds; None for predictions made before segmentation."""
    segments = prediction.segments if prediction else None
    if not segments:
        return None
    return drawing.HeartSounds(
        s1_s=[float(onset) for onset in segments.get("s1_s") or []],
        s2_s=[float(onset) for onset in segments.get("s2_s") or []],
    )


def screened_classes(model_version: ModelVersion | None) -> tuple[list[str], float | None]:
    """Classes to draw and the decision threshold: a screening model's positive
    class alone against its threshold, otherwise every class."""
    if model_version is None:
        return [], None
    positive = verdicts.positive_class(model_version)
    if positive is None:
        return list(model_version.classes), None
    return [positive], float((model_version.manifest or {}).get("decision_threshold", 0.5))


def timeline_windows(prediction: Prediction | None) -> list[drawing.Window]:
    """The prediction's per-window probabilities (``start_s``, ``end_s`` in seconds
    and ``probabilities`` by class name, as the inference engine writes them)."""
    if prediction is None:
        return []
    return [
        drawing.Window(
            start_s=float(entry["start_s"]),
            end_s=float(entry["end_s"]),
            probabilities={str(name): float(value) for name, value in entry["probabilities"].items()},
        )
        for entry in prediction.timeline or []
    ]


def draw_spectrogram(audio: Any) -> bytes:
    return drawing.draw_spectrogram(audio.samples, sample_rate=audio.sample_rate, duration_s=audio.duration_s)
