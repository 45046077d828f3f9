"""Serve a bundle's TensorFlow Lite export with the LiteRT interpreter.

A worker that classifies through LiteRT never imports TensorFlow: about 45 MB
instead of about 700 MB per process, and no multi-second import at start-up.
The export is only used when the manifest names it (``python -m ml export``
writes it after a parity check against the Keras model) and its checksum
matches (``verify_bundle``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ml.bundle import Manifest


def available() -> bool:
    """Whether the LiteRT interpreter is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def lite_predictor(
    bundle_dir: Path, manifest: Manifest, *, threads: int = 1
) -> Callable[[np.ndarray], np.ndarray]:
    """Window probabilities ``(n, classes)`` for windows ``(n, frames, features)``.

    The export takes a fixed number of windows per call (the recurrent loop
    needs static shapes): windows go through in groups of that size, the last
    one padded.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(bundle_dir / manifest.lite_file), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]["index"]
    size = int(source["shape"][0])
    expected = tuple(int(dimension) for dimension in source["shape"][1:])
    if expected != tuple(manifest.features.window_shape):
        raise ValueError(
            f"the TensorFlow Lite model takes windows of {expected}, "
            f"the features give {tuple(manifest.features.window_shape)}"
        )
    group = np.zeros((size, *expected), dtype=np.float32)

    def predict(windows: np.ndarray) -> np.ndarray:
        outputs = np.empty((len(windows), len(manifest.classes)), dtype=np.float32)
        for start in range(0, len(windows), size):
            part = windows[start : start + size]
            group[: len(part)] = part
            group[len(part) :] = 0.0
            interpreter.set_tensor(source["index"], group)
            interpreter.invoke()
            outputs[start : start + len(part)] = interpreter.get_tensor(target)[: len(part)]
        return outputs

    return predict
