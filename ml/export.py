"""``python -m ml export BUNDLE --format tflite [--quantize float16|int8]``.

Converts the bundle's model (variables frozen into constants, batch of one
window) to TensorFlow Lite and checks parity with Keras on real windows.
``int8`` is dynamic-range quantisation (int8 weights, float activations): full
integer quantisation cannot calibrate the recurrent loop. Tolerances are the
largest allowed absolute difference of any class probability.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.bundle import LITE_FILE, attach_lite
from ml.errors import AudioError
from ml.features import batch_windows
from ml.predict import find_recordings

PARITY_TOLERANCE = {"none": 1e-4, "float16": 2e-2, "int8": 8e-2}
PARITY_WINDOWS = 64
# Windows per call of the export the engine serves: a fixed batch runs about
# 3.5x faster per window than one window per call.
SERVING_BATCH = 64
DEFAULT_PARITY_AUDIO = Path("samples/physionet")


@dataclass(frozen=True)
class ParityReport:
    """Keras vs TFLite on ``windows`` real windows: worst probability gap and label agreement."""

    quantize: str
    windows: int
    max_abs_diff: float
    label_agreement: float
    tolerance: float
    passed: bool
    size_bytes: int


def convert(model: Any, *, window_shape: tuple[int, int], quantize: str, batch: int = 1) -> bytes:
    """TFLite flatbuffer of ``model`` for ``batch`` windows; ``quantize`` is none, float16 or int8.

    The batch is fixed: the converter needs static shapes in the recurrent loop.
    """
    import tensorflow as tf

    # TensorFlow ships no type information, so the compiled function is untyped.
    @tf.function(input_signature=[tf.TensorSpec([batch, *window_shape], tf.float32)])  # type: ignore[untyped-decorator]
    def single_window(windows: Any) -> Any:
        return model(windows, training=False)

    # Resource variables inside the recurrent while-loop do not survive
    # conversion; freezing them into constants does.
    frozen = frozen_function(single_window.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def frozen_function(function: Any) -> Any:
    """A concrete TensorFlow function with its variables folded in as constants.

    TensorFlow offers this only under its private ``tensorflow.python`` package,
    so this is the one place that imports anything private from it: a TensorFlow
    that moved or dropped it fails here, naming what is missing, and nowhere else.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError as missing:
        raise ImportError(
            f"TensorFlow {tf.__version__} has no tensorflow.python.framework.convert_to_constants."
            "convert_variables_to_constants_v2, which the TFLite export needs to freeze the model's "
            "variables (a private API: see ml.export.frozen_function)"
        ) from missing
    return convert_variables_to_constants_v2(function)


def tflite_probabilities(flatbuffer: bytes, windows: np.ndarray) -> np.ndarray:
    """Run the TFLite model on the windows; returns ``(n, classes)``."""
    from ml.lite import interpreter_predictor

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own copy, deprecated but still there
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    predict, _ = interpreter_predictor(Interpreter(model_content=flatbuffer))
    return predict(windows)


def parity_windows(paths: list[Path], *, engine: Any, limit: int = PARITY_WINDOWS) -> np.ndarray:
    """Real windows from audio files (at most ``limit``)."""
    samples = []
    for path in find_recordings(paths):
        try:
            samples.append(engine.decode(path).samples)
        except AudioError:
            continue
    if not samples:
        raise ValueError("no decodable recordings for the parity check")
    return batch_windows(samples, config=engine.feature_config).windows[:limit]


def check_parity(engine: Any, flatbuffer: bytes, windows: np.ndarray, *, quantize: str) -> ParityReport:
    """Compare Keras (the engine) and TFLite probabilities on ``windows``."""
    reference = engine.predict_windows(windows)
    converted = tflite_probabilities(flatbuffer, windows)
    gap = float(np.max(np.abs(reference - converted)))
    agreement = float(np.mean(np.argmax(reference, axis=1) == np.argmax(converted, axis=1)))
    tolerance = PARITY_TOLERANCE[quantize]
    return ParityReport(quantize, len(windows), gap, agreement, tolerance, gap <= tolerance, len(flatbuffer))


def export_bundle(
    bundle: Path, *, quantize: str, out: Path, parity_audio: list[Path], batch: int = 1
) -> ParityReport:
    """Convert, write ``out`` (and ``out`` + ``.parity.json``) and return the parity report.

    A float32 export written into the bundle itself (``<bundle>/model.tflite``)
    that passes the parity check is named in the manifest: engines then serve
    it with LiteRT, without TensorFlow.
    """
    from ml.inference import Engine, load_model

    engine = Engine.load(bundle, runtime="keras")  # the reference is the Keras model
    model = load_model(bundle, engine.manifest)
    shape = engine.feature_config.window_shape
    flatbuffer = convert(model, window_shape=shape, quantize=quantize, batch=batch)
    report = check_parity(engine, flatbuffer, parity_windows(parity_audio, engine=engine), quantize=quantize)
    out.parent.mkdir(parents=True, exist_ok=True)
    if report.passed and quantize == "none" and out.resolve() == (bundle / LITE_FILE).resolve():
        attach_lite(bundle, flatbuffer)
    else:
        out.write_bytes(flatbuffer)
    out.with_name(out.name + ".parity.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml export``."""
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--format", choices=("tflite",), default="tflite")
    parser.add_argument("--quantize", choices=("none", "float16", "int8"), default="none")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: <bundle>/model[-<quantize>].tflite; a float32 <bundle>/model.tflite that passes "
        "parity is named in the manifest and served by the engine (LiteRT, no TensorFlow)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"windows per call (default {SERVING_BATCH} for the served model.tflite, 1 otherwise)",
    )
    parser.add_argument(
        "--parity-audio",
        type=Path,
        action="append",
        default=None,
        help=f"audio files or folders for the parity check (default: {DEFAULT_PARITY_AUDIO})",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml export``; exit status 1 when parity fails."""
    from ml.inference import configure_threads

    configure_threads(1)
    suffix = "" if args.quantize == "none" else f"-{args.quantize}"
    out = args.out or args.bundle / f"model{suffix}.tflite"
    serving = args.quantize == "none" and out.resolve() == (args.bundle / LITE_FILE).resolve()
    batch = args.batch or (SERVING_BATCH if serving else 1)
    report = export_bundle(
        args.bundle,
        quantize=args.quantize,
        out=out,
        parity_audio=args.parity_audio or [DEFAULT_PARITY_AUDIO],
        batch=batch,
    )
    verdict = "passed" if report.passed else "FAILED"
    print(
        f"{out}: {report.size_bytes} bytes; parity {verdict} on {report.windows} windows: "
        f"max |p_keras - p_tflite| = {report.max_abs_diff:.2e} (tolerance {report.tolerance:.0e}), "
        f"label agreement {report.label_agreement:.1%}"
    )
    return 0 if report.passed else 1
