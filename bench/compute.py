"""The two reference loops the end-to-end figure is compared with.

Both run in processes of their own (TensorFlow never enters the caller):

- the compute limit: the worker's own decode + batched Engine.classify over the
  same recordings, with as many processes as the bulk worker has, no queue, no
  database, no storage;
- the naive loop: per file `librosa.load` + librosa features + `model.predict`,
  what a view that classifies one upload at a time does.
"""

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.threads import pin_threads

CHUNK = 64


def _limit_worker(bundle: str, paths: list[str], start: Any, results: Any) -> None:
    pin_threads(1)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    from ml.inference import Engine, configure_threads

    configure_threads(1)
    engine = Engine.load(bundle)
    payloads = [Path(path).read_bytes() for path in paths]
    start.wait()
    began = time.perf_counter()
    for offset in range(0, len(payloads), CHUNK):
        engine.classify([engine.decode(data) for data in payloads[offset : offset + CHUNK]])
    results.put(time.perf_counter() - began)


def compute_limit(bundle: Path, paths: list[Path], processes: int) -> float:
    """Recordings per second of `processes` processes classifying their share in chunks."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes + 1), context.Queue()
    shares = [[str(p) for p in paths[i::processes]] for i in range(processes)]
    workers = [
        context.Process(target=_limit_worker, args=(str(bundle), share, start, results)) for share in shares
    ]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for _ in workers:
        results.get()
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join()
    return len(paths) / wall


def _naive_worker(bundle: str, paths: list[str], results: Any) -> None:
    pin_threads(1)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import librosa

    from ml.bundle import verify_bundle
    from ml.inference import configure_threads, load_model

    configure_threads(1)
    manifest = verify_bundle(bundle)
    model = load_model(Path(bundle), manifest)
    config = manifest.features
    frames = config.frames_per_window
    _naive_one(model, config, paths[0], frames, librosa)  # warm-up, not timed
    began = time.perf_counter()
    for path in paths:
        _naive_one(model, config, path, frames, librosa)
    results.put(len(paths) / (time.perf_counter() - began))


def _naive_one(model: Any, config: Any, path: str, frames: int, librosa: Any) -> Any:
    samples, rate = librosa.load(path, sr=config.sample_rate)
    if config.kind == "cycles":  # beat measures per file, then one model.predict call per file
        from ml import cycles

        measures = cycles.beat_measures(samples, sample_rate=rate)
        beats, _ = cycles.beat_windows(measures, beats_per_window=frames, hop=config.frames_per_hop)
        return model.predict(beats.astype(np.float32), verbose=0).mean(axis=0)
    mel = librosa.feature.melspectrogram(
        y=samples, sr=rate, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
        fmin=config.band_low_hz, fmax=config.band_high_hz,
    )  # fmt: skip
    features = np.log(mel + 1e-6).T
    hop = config.frames_per_hop
    starts = range(0, max(len(features) - frames, 0) + 1, hop)
    windows = np.stack([np.resize(features[s : s + frames], (frames, features.shape[1])) for s in starts])
    return model.predict(windows.astype(np.float32), verbose=0).mean(axis=0)


def naive_loop(bundle: Path, paths: list[Path]) -> float:
    """Recordings per second of the per-file librosa + model.predict loop (one process)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    worker = context.Process(target=_naive_worker, args=(str(bundle), [str(p) for p in paths], results))
    worker.start()
    rate = float(results.get())
    worker.join()
    return rate
