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
from typing import Any

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
    """Window probabilities ``(n, classes)`` for windows ``(n, frames, features)``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(bundle_dir / manifest.lite_file), num_threads=threads)
    predict, window_shape = interpreter_predictor(interpreter)
    if window_shape != tuple(manifest.features.window_shape):
        raise ValueError(
            f"the TensorFlow Lite model takes windows of {window_shape}, "
            f"the features give {tuple(manifest.features.window_shape)}"
        )
    return predict


def interpreter_predictor(interpreter: Any) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...]]:
    """A window predictor over a TFLite interpreter, and the window shape it takes.

    The export takes a fixed number of windows per call (the recurrent loop
    needs static shapes): windows go through in groups of that size, the last
    one padded.
    """
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    size = int(source["shape"][0])
    window_shape = tuple(int(dimension) for dimension in source["shape"][1:])
    group = np.zeros((size, *window_shape), dtype=np.float32)

    def predict(windows: np.ndarray) -> np.ndarray:
        outputs = np.empty((len(windows), int(output["shape"][-1])), dtype=np.float32)
        for start in range(0, len(windows), size):
            part = windows[start : start + size]
            group[: len(part)] = part
            group[len(part) :] = 0.0
            interpreter.set_tensor(source["index"], group)
            interpreter.invoke()
            outputs[start : start + len(part)] = interpreter.get_tensor(output["index"])[: len(part)]
        return outputs

    return predict, window_shape
