"""Serving a bundle's TensorFlow Lite export with LiteRT: same answers as Keras,
no TensorFlow in the process, tamper detection, and the export that attaches it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml.bundle import DEFAULT_SCREENING_BUNDLE, verify_bundle
from ml.errors import BundleError
from tests.ml.conftest import SAMPLES


def test_it_ships_the_screening_bundle_with_its_export() -> None:
    manifest = verify_bundle(DEFAULT_SCREENING_BUNDLE)
    assert manifest.lite_file == "model.tflite" and len(manifest.lite_sha256) == 64


def test_it_gives_the_keras_answers_through_litert() -> None:
    from ml.inference import Engine

    lite = Engine.load(DEFAULT_SCREENING_BUNDLE)
    keras = Engine.load(DEFAULT_SCREENING_BUNDLE, runtime="keras")
    assert (lite.runtime, keras.runtime) == ("lite", "keras")
    audios = [lite.decode(path) for path in sorted(SAMPLES.glob("*.wav"))[:5]]  # the last call is padded
    for mine, theirs in zip(lite.classify(audios), keras.classify(audios), strict=True):
        assert mine.label == theirs.label
        assert mine.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
        assert [w["start_s"] for w in mine.timeline] == [w["start_s"] for w in theirs.timeline]


def test_it_serves_the_export_without_tensorflow() -> None:
    code = (
        "import sys; from ml.inference import Engine, configure_threads; configure_threads(1);"
        f"engine = Engine.load({str(DEFAULT_SCREENING_BUNDLE)!r});"
        "print(engine.runtime, 'tensorflow' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.split()[-2:] == ["lite", "False"]


def test_it_refuses_a_changed_export(tmp_path: Path) -> None:
    bundle = tmp_path / "tampered"
    shutil.copytree(DEFAULT_SCREENING_BUNDLE, bundle)
    data = bytearray((bundle / "model.tflite").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="TensorFlow Lite checksum mismatch"):
        verify_bundle(bundle)


def test_it_attaches_an_export_that_passes_parity(tmp_path: Path) -> None:
    import dataclasses
    import json

    from ml.bundle import MANIFEST_FILE, read_manifest
    from ml.export import SERVING_BATCH, export_bundle

    bundle = tmp_path / "plain"
    shutil.copytree(DEFAULT_SCREENING_BUNDLE, bundle)
    (bundle / "model.tflite").unlink()
    plain = dataclasses.replace(read_manifest(bundle), lite_file="", lite_sha256="")
    (bundle / MANIFEST_FILE).write_text(json.dumps(plain.to_dict()))
    assert verify_bundle(bundle).lite_file == ""

    report = export_bundle(
        bundle, quantize="none", out=bundle / "model.tflite", parity_audio=[SAMPLES], batch=SERVING_BATCH
    )

    assert report.passed
    assert verify_bundle(bundle).lite_file == "model.tflite"
