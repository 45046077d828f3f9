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


def measure(
    bundle: Path, count: int, seed: int, start: Any = None, runtime: str = "auto"
) -> dict[str, float]:
    """Stage timings (seconds) and memory of one process over ``count`` recordings."""
    started = time.perf_counter()
    from ml.inference import Engine, configure_threads

    configure_threads(1)
    imported = time.perf_counter()
    from ml import quality
    from ml.features import batch_windows

    loading = time.perf_counter()
    engine = Engine.load(bundle, runtime=runtime)
    engine.classify([engine.decode(synthetic_wavs(1, seed=seed)[0])])
    loaded = time.perf_counter()
    models = [engine, *(member for member, _ in engine.members)]
    if start is not None:
        start.wait()
    totals = dict.fromkeys(("decode", "features", "inference", "quality"), 0.0)
    for offset in range(0, count, CHUNK):
        # Made per chunk, outside the timed stages, so memory reflects a worker holding one chunk.
        wavs = synthetic_wavs(min(CHUNK, count - offset), seed=seed * count + offset)
        tick = time.perf_counter()
        audios = [engine.decode(wav) for wav in wavs]
        decoded = time.perf_counter()
        features_s = inference_s = 0.0
        for model in models:  # a composite bundle's members read the same recordings
            begun = time.perf_counter()
            batch = batch_windows([audio.samples for audio in audios], config=model.feature_config)
            featured = time.perf_counter()
            model.predict_windows(batch.windows)
            features_s += featured - begun
            inference_s += time.perf_counter() - featured
        inferred = time.perf_counter()
        for audio in audios:
            quality.assess(audio)
        assessed = time.perf_counter()
        stages = (decoded - tick, features_s, inference_s, assessed - inferred)
        for key, seconds in zip(totals, stages, strict=True):
            totals[key] += seconds
    return {
        **totals,
        "wall": sum(totals.values()),
        "count": count,
        "import_s": imported - started,
        "load_to_first_prediction_s": loaded - loading,
        "max_rss_mib": _peak_rss_kib() / KIB_PER_MIB,
    }


def _peak_rss_kib() -> float:
    """Peak resident set of this process image.

    Not getrusage: its maximum survives fork and exec, so a spawned process
    would report its parent's peak when that was higher.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def rates(result: dict[str, float]) -> dict[str, float]:
    """Recordings per second per stage, for features + inference and end to end."""
    count = result["count"]
    stages = ("decode", "features", "inference", "quality")
    out = {f"{stage}_per_s": count / result[stage] for stage in stages}
    out["features_plus_inference_per_s"] = count / (result["features"] + result["inference"])
    out["all_stages_per_s"] = count / result["wall"]
    return out


def _worker(bundle: str, count: int, seed: int, start: Any, results: Any, runtime: str) -> None:
    results.put(measure(Path(bundle), count, seed, start, runtime))


def run_processes(bundle: Path, count: int, processes: int, runtime: str = "auto") -> list[dict[str, float]]:
    """Run ``processes`` spawned workers that start timing together."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(bundle), count, seed, start, results, runtime))
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
    parser.add_argument(
        "--runtime",
        choices=("lite", "keras", "both"),
        default="both",
        help="LiteRT on the bundle's export, the Keras model on TensorFlow, or both (default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml bench``."""
    from ml import lite
    from ml.bundle import read_manifest

    runtimes = ["lite", "keras"] if args.runtime == "both" else [args.runtime]
    if not (read_manifest(args.model).lite_file and lite.available()):
        if args.runtime == "lite":
            print("the bundle has no TensorFlow Lite export (python -m ml export) or LiteRT is missing")
            return 1
        runtimes = ["keras"]
    report: dict[str, Any] = {}
    for runtime in runtimes:
        for processes in (1, 2):
            results = run_processes(args.model, args.recordings, processes, runtime)
            per_process = [rates(result) for result in results]
            combined = {key: sum(r[key] for r in per_process) for key in per_process[0]}
            report[f"{runtime}_{processes}_process"] = {"combined": combined, "processes": results}
            print(f"{runtime}, {processes} process(es), {args.recordings} x 10-s 2 kHz recordings each:")
            for key, value in combined.items():
                print(f"  {key:32s} {value:10.0f} recordings/s")
            for result in results:
                print(
                    f"  import {result['import_s']:.2f} s, load to first prediction "
                    f"{result['load_to_first_prediction_s']:.2f} s (target <= 3 s), "
                    f"max RSS {result['max_rss_mib']:.0f} MiB (target <= 800 MB = 763 MiB)"
                )
        print(f"  target: features + inference >= 1000 recordings/s on one core ({runtime}, 1 process above)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
