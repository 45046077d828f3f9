"""Fast batched inference: load a bundle once, classify many recordings per call.

The model runs through one ``tf.function`` with a fixed input signature (the batch
dimension is the only free one, so it never retraces), over chunks of at most
``MAX_BATCH_WINDOWS`` windows. ``model.predict`` is never called: its per-call
overhead (~40 ms) would dominate a batch of 10-s recordings.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ml import calibration, quality, threads
from ml.audio import Audio, AudioSource, decode_audio
from ml.bundle import Manifest, member_dirs, verify_bundle
from ml.errors import BundleError
from ml.features import WindowBatch, batch_windows
from ml.scoring import aggregate_windows, decide

MAX_BATCH_WINDOWS = 1024
WARMUP_WINDOWS = 8
MS_PER_S = 1000.0
RUNTIMES = ("auto", "lite", "keras")


_threads: int | None = None


def configure_threads(count: int = 1) -> None:
    """Limit TensorFlow, LiteRT and BLAS to ``count`` threads; call before loading a bundle.

    Worker processes scale by process count: two processes that each use every
    core run several times slower on a small machine than one thread each. BLAS
    reads its variables when numpy loads, so a worker's environment should set
    them too. TensorFlow's pools are set when TensorFlow is first needed (a
    bundle served by LiteRT never imports it).
    """
    global _threads
    _threads = count
    threads.pin_threads(count)
    if "tensorflow" in sys.modules:
        _tensorflow()


def _tensorflow() -> Any:
    """TensorFlow, with the configured thread pools."""
    import tensorflow as tf

    if _threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(_threads)
            tf.config.threading.set_inter_op_parallelism_threads(_threads)
        except RuntimeError:
            # TensorFlow refuses once its runtime is initialised; the first setting holds.
            pass
    return tf


@dataclass(frozen=True)
class Classification:
    """The result for one recording.

    ``probabilities`` maps every class to its recording-level probability;
    ``confidence`` is the probability of ``label``; ``timeline`` holds one dict
    per window (``start_s``, ``end_s`` in seconds, ``probabilities``); ``timings``
    are this recording's share of the batch's milliseconds per stage.
    ``decision`` is ``label`` or ``uncertain`` (with ``decision_reasons``);
    ``raw_probability`` is the model's own probability of the positive class before
    calibration; ``segments`` holds the heart-cycle segmentation
    (``ml.segmentation.Segmentation.summary``).
    """

    label: str
    probabilities: dict[str, float]
    confidence: float
    timeline: list[dict[str, Any]]
    quality: str
    quality_reasons: list[str]
    heart_rate_bpm: float | None
    timings: dict[str, float]
    decision: str = ""
    decision_reasons: list[str] = field(default_factory=list)
    raw_probability: float | None = None
    segments: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields, sharing their values (lists and dicts not copied).

        ``dataclasses.asdict`` copied every list and dict of the timeline and the
        segmentation one object at a time: about 1 ms a recording, a fifth of what
        decoding and classifying it costs. The fields hold plain JSON values built
        for this result alone, which the callers (the worker's result rows) only read.
        """
        return {item.name: getattr(self, item.name) for item in fields(self)}


class Engine:
    """A loaded bundle with its compiled inference function."""

    def __init__(
        self,
        manifest: Manifest,
        predict_windows: Callable[[np.ndarray], np.ndarray],
        *,
        runtime: str = "keras",
        members: Sequence[tuple[Engine, float]] = (),
    ) -> None:
        self.manifest = manifest
        # A composite bundle's other models (``Manifest.members``), each with its weight.
        self.members = tuple(members)
        self.runtime = runtime
        self.classes: tuple[str, ...] = manifest.classes
        self.feature_config = manifest.features
        self.feature_fingerprint = manifest.feature_fingerprint
        self._predict_windows = predict_windows
        self.calibration = calibration.manifest_calibration(
            manifest.calibration, decision_threshold=manifest.decision_threshold
        )
        self._ood = self.calibration.ood()

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """Recording probabilities ``(n, classes)`` through the bundle's calibration (two classes)."""
        if not self.manifest.calibration or self.manifest.positive_class is None or len(self.classes) != 2:
            return probabilities
        positive = self.classes.index(self.manifest.positive_class)
        calibrated = np.empty_like(probabilities, dtype=np.float64)
        calibrated[:, positive] = self.calibration.probability(probabilities[:, positive])
        calibrated[:, 1 - positive] = 1.0 - calibrated[:, positive]
        return calibrated

    @classmethod
    def load(cls, bundle_dir: str | Path, *, runtime: str = "auto") -> Engine:
        """Verify a bundle, prepare its model and warm up the inference function.

        ``runtime``: ``lite`` serves the bundle's parity-checked TensorFlow Lite
        export with LiteRT, ``keras`` builds the Keras model and compiles one
        TensorFlow function, ``auto`` takes ``lite`` when the bundle has an
        export and LiteRT is installed.
        """
        from ml import lite

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        bundle = Path(bundle_dir)
        manifest = verify_bundle(bundle)
        requested = runtime
        if runtime == "auto":
            runtime = "lite" if manifest.lite_file and lite.available() else "keras"
        if runtime == "lite":
            if not manifest.lite_file:
                raise BundleError(
                    f"bundle {manifest.name} has no TensorFlow Lite export: run python -m ml export"
                )
            predict = lite.lite_predictor(bundle, manifest, threads=_threads or 1)
        else:
            predict = _compiled_predictor(load_model(bundle, manifest), manifest.features.window_shape)
        members = [
            (cls.load(member_dir, runtime=requested), weight)
            for member_dir, weight in member_dirs(bundle, manifest)  # verify_bundle checked them
        ]
        engine = cls(manifest, predict, runtime=runtime, members=members)
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Build the cached filterbank and trace the compiled function before real work."""
        config = self.feature_config
        silence = np.zeros(int(config.window_s * config.sample_rate), dtype=np.float32)
        batch = batch_windows([silence], config=config)
        self.predict_windows(np.repeat(batch.windows, WARMUP_WINDOWS, axis=0))
        if batch.beats is None:
            # Compiles the segmenter's decoder (numba) now rather than in the first request
            # (a bundle that reads beats did so while building the batch above).
            self._beats(
                [Audio(silence + 1e-3, config.sample_rate, config.sample_rate, 1, config.window_s, "PCM_16")]
            )

    def decode(self, source: AudioSource) -> Audio:
        """Decode a recording the way this bundle expects (rate, band, minimum duration)."""
        config = self.feature_config
        return decode_audio(
            source,
            target_rate=config.sample_rate,
            min_duration_s=self.manifest.min_duration_s,
            band_hz=config.band_hz,
        )

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` for windows ``(n, frames, features)``."""
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        parts = [
            self._predict_windows(windows[start : start + MAX_BATCH_WINDOWS])
            for start in range(0, len(windows), MAX_BATCH_WINDOWS)
        ]
        return np.concatenate(parts)

    def classify(self, audios: Sequence[Audio]) -> list[Classification]:
        """Classify recordings (decoded at the bundle's sample rate) in batched calls."""
        if not audios:
            return []
        self._check_rates(audios)
        started = time.perf_counter()
        batch = batch_windows([audio.samples for audio in audios], config=self.feature_config)
        featured = time.perf_counter()
        window_probabilities = self.predict_windows(batch.windows)
        inferred = time.perf_counter()
        member_scores, member_features_s, member_inference_s = self._member_scores(
            [audio.samples for audio in audios]
        )
        scored = time.perf_counter()
        reports = [quality.assess(audio) for audio in audios]
        assessed = time.perf_counter()
        beats = batch.beats if batch.beats is not None else self._beats(audios)
        segmented = time.perf_counter()
        share = MS_PER_S / len(audios)
        timings = {
            "features_ms": (featured - started + member_features_s) * share,
            "inference_ms": (inferred - featured + member_inference_s) * share,
            "quality_ms": (assessed - scored) * share,
            "segmentation_ms": (segmented - assessed) * share,
        }
        return self._results(batch, window_probabilities, reports, timings, beats, member_scores)

    def score(self, recordings: Sequence[np.ndarray]) -> np.ndarray:
        """Recording probabilities ``(n, classes)`` before calibration, a composite's members
        included: what ``classify`` decides on, without quality, segments or timelines."""
        batch = batch_windows(recordings, config=self.feature_config)
        probabilities = aggregate_windows(
            self.predict_windows(batch.windows), batch.recording_index, num_recordings=len(recordings)
        )
        return self._combine(probabilities, self._member_scores(recordings)[0])

    def _member_scores(self, recordings: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float, float]:
        """Each member's probability of the positive class per recording (none without members),
        and the seconds their features and inference took."""
        found: list[np.ndarray] = []
        features_s = inference_s = 0.0
        positive = self.classes.index(str(self.manifest.positive_class))
        for member, _ in self.members:
            started = time.perf_counter()
            batch = batch_windows(recordings, config=member.feature_config)
            featured = time.perf_counter()
            windows = member.predict_windows(batch.windows)
            features_s += featured - started
            inference_s += time.perf_counter() - featured
            scores = aggregate_windows(windows, batch.recording_index, num_recordings=len(recordings))
            found.append(scores[:, positive])
        return found, features_s, inference_s

    def _combine(self, probabilities: np.ndarray, member_scores: Sequence[np.ndarray]) -> np.ndarray:
        """This model's probabilities ``(n, 2)`` averaged with the members' in log-odds."""
        if not self.members:
            return probabilities
        positive = self.classes.index(str(self.manifest.positive_class))
        combined = np.empty(probabilities.shape, dtype=np.float64)
        combined[:, positive] = calibration.combine_log_odds(
            [probabilities[:, positive], *member_scores], [weight for _, weight in self.members]
        )
        combined[:, 1 - positive] = 1.0 - combined[:, positive]
        return combined

    def _beats(self, audios: Sequence[Audio]) -> tuple[Any, ...]:
        """Heart cycles of recordings whose model does not read beats (every result shows them)."""
        from ml import cycles

        rate = self.feature_config.sample_rate  # _check_rates: every recording is at this rate
        return tuple(cycles.beat_measures_batch([audio.samples for audio in audios], sample_rate=rate))

    def _check_rates(self, audios: Sequence[Audio]) -> None:
        expected = self.feature_config.sample_rate
        wrong = [audio.sample_rate for audio in audios if audio.sample_rate != expected]
        if wrong:
            raise ValueError(f"recordings must be decoded at {expected} Hz, got {wrong[0]} Hz")

    def _results(
        self,
        batch: WindowBatch,
        window_probabilities: np.ndarray,
        reports: list[quality.QualityReport],
        timings: dict[str, float],
        beats: tuple[Any, ...],
        member_scores: Sequence[np.ndarray] = (),
    ) -> list[Classification]:
        raw = self._combine(
            aggregate_windows(window_probabilities, batch.recording_index, num_recordings=len(reports)),
            member_scores,
        )
        recording_probabilities = self.calibrate(raw)
        distances = self._distances(beats)
        labels = decide(
            recording_probabilities,
            classes=self.classes,
            positive_class=self.manifest.positive_class,
            threshold=self.manifest.decision_threshold,
        )
        # Windows through the same calibration, so the timeline and the threshold share a scale;
        # a composite's members score whole recordings, so each window keeps its recording's.
        window_members = [scores[batch.recording_index] for scores in member_scores]
        timelines = self._timelines(
            batch, self.calibrate(self._combine(window_probabilities, window_members)), len(reports)
        )
        results = []
        positive = self.manifest.positive_class
        for index, report in enumerate(reports):
            probabilities = dict(zip(self.classes, map(float, recording_probabilities[index]), strict=True))
            label = self.classes[int(labels[index])]
            segments = beats[index].segmentation.summary()
            decision = self._decision(label, probabilities, report, distances[index])
            results.append(
                Classification(
                    label=label,
                    probabilities=probabilities,
                    confidence=probabilities[label],
                    timeline=timelines[index],
                    quality=report.verdict,
                    quality_reasons=report.reasons,
                    heart_rate_bpm=segments["heart_rate_bpm"]
                    if segments["cycles"] >= 2
                    else report.heart_rate_bpm,
                    timings=dict(timings),
                    decision=decision.outcome,
                    decision_reasons=decision.reasons,
                    raw_probability=None
                    if positive is None
                    else float(raw[index, self.classes.index(positive)]),
                    segments=segments,
                )
            )
        return results

    def _distances(self, beats: tuple[Any, ...]) -> list[float | None]:
        if self._ood is None:
            return [None] * len(beats)
        from ml import cycles

        statistics = np.stack([cycles.recording_statistics(measures) for measures in beats])
        return [float(value) for value in self._ood.distance(statistics)]

    def _decision(
        self,
        label: str,
        probabilities: dict[str, float],
        report: quality.QualityReport,
        distance: float | None,
    ) -> calibration.Decision:
        positive = self.manifest.positive_class
        if positive is None or len(self.classes) != 2:
            unusable = report.verdict == quality.UNUSABLE
            reasons = ["re-record: " + "; ".join(report.reasons)] if unusable else []
            return calibration.Decision(
                calibration.UNCERTAIN if unusable else label, probabilities[label], reasons
            )
        return calibration.decide_one(
            probabilities[positive],
            calibration=self.calibration,
            classes=self.classes,
            positive_class=positive,
            quality=report.verdict,
            quality_reasons=report.reasons,
            distance=distance,
        )

    def _timelines(
        self, batch: WindowBatch, window_probabilities: np.ndarray, count: int
    ) -> list[list[dict[str, Any]]]:
        timelines: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        for row, owner in enumerate(batch.recording_index):
            timelines[int(owner)].append(
                {
                    "start_s": round(float(batch.start_s[row]), 3),
                    "end_s": round(float(batch.end_s[row]), 3),
                    "probabilities": dict(
                        zip(self.classes, map(float, window_probabilities[row]), strict=True)
                    ),
                }
            )
        return timelines


def load_model(bundle_dir: Path, manifest: Manifest) -> Any:
    """Build the bundle's Keras model and load its weights (checksum not re-checked)."""
    _tensorflow()  # thread pools first
    from ml.models import build_model

    model = build_model(**_model_kwargs(manifest))
    model.load_weights(bundle_dir / manifest.weights_file)
    return model


def _model_kwargs(manifest: Manifest) -> dict[str, Any]:
    kwargs = dict(manifest.model_config)
    kwargs["input_shape"] = tuple(kwargs.get("input_shape", manifest.features.window_shape))
    kwargs.setdefault("num_classes", len(manifest.classes))
    return kwargs


def _compiled_predictor(model: Any, window_shape: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    tf = _tensorflow()

    # TensorFlow ships no type information, so the compiled function is untyped; run() types it.
    @tf.function(input_signature=[tf.TensorSpec([None, *window_shape], tf.float32)], reduce_retracing=True)  # type: ignore[untyped-decorator]
    def predict(windows: Any) -> Any:
        return model(windows, training=False)

    def run(windows: np.ndarray) -> np.ndarray:
        return np.asarray(predict(tf.convert_to_tensor(windows, dtype=tf.float32)))

    return run
