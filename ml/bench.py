"""``python -m ml bench``: recordings per second per stage, one and two processes.

Recordings are synthetic 10-s heart-sound WAVs at 2 kHz (16-bit), decoded from
bytes in memory, so the numbers measure this package and not the disk. Each
process sets its thread pools to one thread, loads the bundle, then times
decoding, features, inference and quality over the same recordings in chunks.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.bundle import DEFAULT_SCREENING_BUNDLE

RECORDING_S = 10.0
RATE_HZ = 2000
CHUNK = 256
DEFAULT_RECORDINGS = 2048
BEAT_HZ = (55.0, 110.0)
KIB_PER_MIB = 1024


def synthetic_wavs(count: int, *, seed: int = 0) -> list[bytes]:
    """``count`` 10-s, 2 kHz, 16-bit WAVs: a beat train with random rate plus noise."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(RECORDING_S * RATE_HZ)) / RATE_HZ
    wavs = []
    for _ in range(count):
        beats_hz = rng.uniform(*BEAT_HZ) / 60.0
        envelope = np.maximum(0.0, np.sin(2 * np.pi * beats_hz * t)) ** 16
        wave = 0.4 * envelope * np.sin(2 * np.pi * 60 * t) + 0.01 * rng.standard_normal(len(t))
        buffer = io.BytesIO()
        sf.write(buffer, wave, RATE_HZ, subtype="PCM_16", format="WAV")
        wavs.append(buffer.getvalue())
    return wavs


def measure(bundle: Path, count: int, seed: int, start: Any = None) -> dict[str, float]:
    """Stage timings (seconds) and memory of one process over ``count`` recordings."""
    started = time.perf_counter()
    from ml.inference import Engine, configure_threads

    configure_threads(1)
    imported = time.perf_counter()
    from ml import quality
    from ml.features import batch_windows

    loading = time.perf_counter()
    engine = Engine.load(bundle)
    engine.classify([engine.decode(synthetic_wavs(1, seed=seed)[0])])
    loaded = time.perf_counter()
    if start is not None:
        start.wait()
    totals = dict.fromkeys(("decode", "features", "inference", "quality"), 0.0)
    for offset in range(0, count, CHUNK):
        # Made per chunk, outside the timed stages, so memory reflects a worker holding one chunk.
        wavs = synthetic_wavs(min(CHUNK, count - offset), seed=seed * count + offset)
        tick = time.perf_counter()
        audios = [engine.decode(wav) for wav in wavs]
        decoded = time.perf_counter()
        batch = batch_windows([audio.samples for audio in audios], config=engine.feature_config)
        featured = time.perf_counter()
        engine.predict_windows(batch.windows)
        inferred = time.perf_counter()
        for audio in audios:
            quality.assess(audio)
        assessed = time.perf_counter()
        stages = (decoded - tick, featured - decoded, inferred - featured, assessed - inferred)
        for key, seconds in zip(totals, stages, strict=True):
            totals[key] += seconds
    return {
        **totals,
        "wall": sum(totals.values()),
        "count": count,
        "import_s": imported - started,
        "load_to_first_prediction_s": loaded - loading,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB,
    }


def rates(result: dict[str, float]) -> dict[str, float]:
    """Recordings per second per stage, for features + inference and end to end."""
    count = result["count"]
    stages = ("decode", "features", "inference", "quality")
    out = {f"{stage}_per_s": count / result[stage] for stage in stages}
    out["features_plus_inference_per_s"] = count / (result["features"] + result["inference"])
    out["all_stages_per_s"] = count / result["wall"]
    return out


def _worker(bundle: str, count: int, seed: int, start: Any, results: Any) -> None:
    results.put(measure(Path(bundle), count, seed, start))


def run_processes(bundle: Path, count: int, processes: int) -> list[dict[str, float]]:
    """Run ``processes`` spawned workers that start timing together."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(bundle), count, seed, start, results))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    collected = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return collected


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml bench``."""
    parser.add_argument("--model", type=Path, default=DEFAULT_SCREENING_BUNDLE)
    parser.add_argument("--recordings", type=int, default=DEFAULT_RECORDINGS, help="per process")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml bench``."""
    report: dict[str, Any] = {}
    for processes in (1, 2):
        results = run_processes(args.model, args.recordings, processes)
        per_process = [rates(result) for result in results]
        combined = {key: sum(r[key] for r in per_process) for key in per_process[0]}
        report[f"{processes}_process"] = {"combined": combined, "processes": results}
        print(f"{processes} process(es), {args.recordings} x 10-s 2 kHz recordings each:")
        for key, value in combined.items():
            print(f"  {key:32s} {value:10.0f} recordings/s")
        for result in results:
            print(
                f"  import {result['import_s']:.2f} s, load to first prediction "
                f"{result['load_to_first_prediction_s']:.2f} s, max RSS {result['max_rss_mib']:.0f} MiB"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
