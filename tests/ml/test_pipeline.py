"""End to end with TensorFlow: a one-epoch training run on the committed samples,
then the engine, the predict and evaluate commands, and TFLite export parity."""

from __future__ import annotations

import csv
import gc
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.__main__ import main
from ml.audio import decode_audio
from ml.bundle import DEFAULT_SCREENING_BUNDLE, verify_bundle
from tests.ml.conftest import SAMPLES, beat_train, encode


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    cache = tmp_path_factory.mktemp("cache")
    status = main(
        [
            "train",
            "--data",
            str(SAMPLES),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--windows-per-recording",
            "2",
            "--cache",
            str(cache),
            "--name",
            "tiny",
            "--external",
            str(SAMPLES),
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def engine(tiny_bundle: Path):  # type: ignore[no-untyped-def]
    from ml.inference import Engine

    return Engine.load(tiny_bundle)


def test_it_trains_a_bundle_with_metrics_and_curves(tiny_bundle: Path) -> None:
    manifest = verify_bundle(tiny_bundle)
    assert manifest.classes == ("normal", "abnormal")
    assert "validation" in manifest.metrics
    assert manifest.metrics["external_physionet"]["overall"]["count"] > 0
    assert (tiny_bundle / "curves.png").stat().st_size > 0
    card = (tiny_bundle / "CARD.md").read_text()
    assert "Intended use" in card
    assert "external_physionet (all)" in card


def test_it_classifies_a_batch_with_timelines(engine) -> None:  # type: ignore[no-untyped-def]
    audios = [decode_audio(path) for path in sorted(SAMPLES.glob("*.wav"))[:5]]
    results = engine.classify(audios)
    assert len(results) == 5
    for audio, result in zip(audios, results, strict=True):
        assert result.label in engine.classes
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert result.confidence == result.probabilities[result.label]
        assert result.timeline[-1]["end_s"] == pytest.approx(audio.duration_s, abs=0.01)
        assert result.quality in ("good", "poor", "unusable")
        assert set(result.timings) >= {"features_ms", "inference_ms"}
        assert result.to_dict()["label"] == result.label


def test_it_gives_the_same_answer_alone_and_in_a_batch(engine) -> None:  # type: ignore[no-untyped-def]
    audios = [decode_audio(path) for path in sorted(SAMPLES.glob("*.wav"))[:4]]
    together = engine.classify(audios)
    alone = engine.classify(audios[2:3])
    assert alone[0].probabilities == pytest.approx(together[2].probabilities, abs=1e-5)


def test_it_loads_the_default_screening_bundle() -> None:
    from ml.inference import Engine

    engine = Engine.load(DEFAULT_SCREENING_BUNDLE)
    wave = encode(beat_train(bpm=72, duration_s=10, sample_rate=2000), sample_rate=2000)
    (result,) = engine.classify([decode_audio(wave)])
    assert result.label in ("normal", "abnormal")
    assert result.heart_rate_bpm == pytest.approx(72, rel=0.05)


def test_it_writes_the_predict_csv_and_keeps_going_after_bad_files(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF")
    (folder / "notes.txt").write_text("ignored: not an audio suffix")
    good = SAMPLES / "a0035.wav"
    out = tmp_path / "results.csv"
    assert main(["predict", str(good), str(folder), "--model", str(tiny_bundle), "--out", str(out)]) == 0
    assert gc.isenabled()  # paused only while the bundle loads
    rows = list(csv.DictReader(out.open()))
    header = out.read_text().splitlines()[0]
    assert header == (
        "path,label,decision,confidence,p_normal,p_abnormal,quality,heart_rate_bpm,cycles,decision_reasons,error"
    )
    assert [row["path"] for row in rows] == [str(good), str(folder / "broken.wav")]
    assert rows[0]["label"] in ("normal", "abnormal") and rows[0]["error"] == ""
    assert rows[0]["decision"] in (rows[0]["label"], "uncertain")
    assert (rows[0]["decision"] == "uncertain") == bool(rows[0]["decision_reasons"])
    assert int(rows[0]["cycles"]) > 5
    assert float(rows[0]["p_normal"]) + float(rows[0]["p_abnormal"]) == pytest.approx(1.0, abs=2e-4)
    assert rows[1]["label"] == "" and rows[1]["error"].startswith("truncated")


def test_it_evaluates_a_labelled_folder(tiny_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["evaluate", str(tiny_bundle), str(SAMPLES), "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "macc=" in printed and "confusion" in printed
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 0


@pytest.mark.parametrize("quantize", ["none", "float16"])
def test_it_exports_tflite_within_tolerance(tiny_bundle: Path, tmp_path: Path, quantize: str) -> None:
    from ml.export import PARITY_TOLERANCE, export_bundle

    report = export_bundle(
        tiny_bundle, quantize=quantize, out=tmp_path / "model.tflite", parity_audio=[SAMPLES]
    )
    assert report.passed
    assert report.max_abs_diff <= PARITY_TOLERANCE[quantize]
    assert (tmp_path / "model.tflite").stat().st_size == report.size_bytes


def test_it_keeps_tensorflow_out_of_light_modules() -> None:
    import subprocess

    code = (
        "import sys, ml.audio, ml.quality, ml.features, ml.bundle, ml.errors, ml.scoring, ml.predict,"
        " ml.calibration;"
        "print(any(name in sys.modules for name in ('tensorflow', 'django', 'numba', 'sklearn')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_the_header_rule_and_thread_pins_import_nothing_numeric() -> None:
    """The web process sniffs uploads and the Celery app pins thread pools before numpy loads."""
    import subprocess

    code = (
        "import sys, ml.sniff, ml.threads;"
        "print(any(name in sys.modules for name in ('numpy', 'scipy', 'soundfile', 'django')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_it_refuses_audio_at_another_rate(engine) -> None:  # type: ignore[no-untyped-def]
    audio = decode_audio(io.BytesIO(encode(np.sin(np.arange(20000) / 5), sample_rate=4000)), target_rate=4000)
    with pytest.raises(ValueError, match="2000 Hz"):
        engine.classify([audio])
