"""Text cells of the predict CSV that a spreadsheet would run as formulas are neutralised."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ml.audio import Audio
from ml.errors import AudioError
from ml.predict import write_predictions
from ml.spreadsheet import text_cell

FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("text", FORMULAS)
def test_it_prefixes_text_a_spreadsheet_would_evaluate(text: str) -> None:
    assert text_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["", "a0001.wav", "clinic/=x.wav", "1.5", "'quoted"])
def test_it_leaves_other_text_alone(text: str) -> None:
    assert text_cell(text) == text


class FakeEngine:
    """Reads every file as a short recording, except the ones named bad, with fixed results."""

    classes = ("normal", "abnormal")

    def decode(self, path: Path) -> Audio:
        if "bad" in path.name:
            raise AudioError("truncated", "-1 bytes after the header")
        return Audio(np.zeros(4000, np.float32), 2000, 2000, 1, 2.0, "PCM_16")

    def classify(self, audios: list[Audio]) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(
                label="abnormal",
                decision="uncertain",
                confidence=0.61,
                probabilities={"normal": 0.39, "abnormal": 0.61},
                quality="poor",
                heart_rate_bpm=-12.0,  # no real rate is negative; a number must stay a number anyway
                segments={"cycles": 3},
                decision_reasons=["-3 dB: poor quality"],
            )
            for _ in audios
        ]


def test_it_writes_a_predict_csv_that_is_safe_in_a_spreadsheet(tmp_path: Path) -> None:
    paths = [tmp_path / "=HYPERLINK(x).wav", tmp_path / "+bad.wav"]
    out = io.StringIO()

    write_predictions(FakeEngine(), paths, out)

    heard, failed = csv.DictReader(io.StringIO(out.getvalue()))
    assert heard["path"] == str(paths[0])  # the folder comes first: nothing to neutralise
    assert heard["decision_reasons"] == "'-3 dB: poor quality"
    assert (heard["heart_rate_bpm"], heard["confidence"], heard["p_abnormal"]) == (
        "-12.0",
        "0.6100",
        "0.6100",
    )
    assert failed["error"] == "truncated: -1 bytes after the header"
    named = write_one(FakeEngine(), Path("=HYPERLINK(x).wav"))
    assert named["path"] == "'=HYPERLINK(x).wav"
    assert write_one(FakeEngine(), Path("-bad.wav"))["path"] == "'-bad.wav"


def write_one(engine: FakeEngine, path: Path) -> dict[str, str]:
    out = io.StringIO()
    write_predictions(engine, [path], out)
    return next(csv.DictReader(io.StringIO(out.getvalue())))
