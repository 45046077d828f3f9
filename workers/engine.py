"""The classifier of a worker process: TensorFlow and the model, loaded once after fork.

`worker_process_init` loads the default model in every pool process, so the
first task does not pay for it; other versions load on first use. Engines are
cached by bundle checksum for the life of the process.
"""

import logging
import time
from collections import OrderedDict
from typing import Any

from jobs.models import ModelVersion
from jobs.services.analysis import Fetched, Result
from jobs.services.registry import local_bundle_dir

logger = logging.getLogger(__name__)

MAX_ENGINES = 3
_engines: "OrderedDict[str, Any]" = OrderedDict()
_threads_configured = False


def engine_for(model_version: ModelVersion) -> Any:
    from ml.inference import Engine, configure_threads

    global _threads_configured
    if not _threads_configured:
        configure_threads(1)
        _threads_configured = True
    key = model_version.bundle_sha256 or model_version.slug
    if key in _engines:
        _engines.move_to_end(key)
        return _engines[key]
    started = time.perf_counter()
    engine = Engine.load(local_bundle_dir(model_version))
    logger.info("loaded model %s in %.1f s", model_version.slug, time.perf_counter() - started)
    _engines[key] = engine
    while len(_engines) > MAX_ENGINES:
        _engines.popitem(last=False)
    return engine


def preload_default() -> None:
    """Load the default model now, if one is registered (called after fork)."""
    version = ModelVersion.objects.filter(is_default=True).first()
    if version is not None:
        engine_for(version)


def classify(model_version: ModelVersion, fetched: list[Fetched]) -> list[Result]:
    """Decode every recording, then classify the decodable ones in one batched call."""
    from ml.errors import AudioError

    engine = engine_for(model_version)
    results: list[Result] = []
    decoded = []
    for item in fetched:
        started = time.perf_counter()
        try:
            audio = engine.decode(item.audio)
        except AudioError as exc:
            results.append(Result(item.claim, error_code=exc.code, error_message=exc.message))
            continue
        decoded.append((item.claim, audio, (time.perf_counter() - started) * 1000))
    classifications = engine.classify([audio for _, audio, _ in decoded]) if decoded else []
    for (claim, audio, decode_ms), found in zip(decoded, classifications, strict=True):
        values = found.to_dict()
        values["timings"] = {"decode_ms": decode_ms, **values["timings"]}
        results.append(
            Result(
                claim,
                classification=values,
                sample_rate=audio.source_rate,
                channels=audio.channels,
                duration_s=audio.duration_s,
            )
        )
    return results
