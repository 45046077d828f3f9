"""``python -m ml predict PATH... [--model BUNDLE] --out results.csv``.

Columns (stable; other programs parse them):
``path,label,decision,confidence,p_<class> for each class,quality,heart_rate_bpm,cycles,
decision_reasons,error``.
``label`` is always one of the model's classes, empty only when ``error`` is set;
``decision`` is the label or ``uncertain`` (poor or unusable recording, unlike the
training data, or too close to the threshold), with ``decision_reasons`` joined by
``; ``. A file that cannot be read gets its error (``code: message``) and the run
goes on. Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``,
``@``, tab, carriage return first) begin with a single quote (ml.spreadsheet).
"""

from __future__ import annotations

import argparse
import csv
import gc
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ml.audio import Audio
from ml.bundle import DEFAULT_SCREENING_BUNDLE
from ml.errors import AudioError
from ml.spreadsheet import text_cell

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64", ".mp3", ".caf"})
RECORDINGS_PER_CALL = 256
PROBABILITY_DIGITS = 4
RATE_DIGITS = 1


def csv_columns(classes: Sequence[str]) -> list[str]:
    """The header of the predictions CSV for a model with ``classes``."""
    return [
        "path",
        "label",
        "decision",
        "confidence",
        *(f"p_{name}" for name in classes),
        "quality",
        "heart_rate_bpm",
        "cycles",
        "decision_reasons",
        "error",
    ]


def find_recordings(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and audio files found recursively in named folders (sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
        else:
            yield path


def _decode(engine: Any, path: Path) -> Audio | str:
    try:
        return engine.decode(path)  # type: ignore[no-any-return]
    except AudioError as exc:
        return f"{exc.code}: {exc.message}"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def predict_rows(engine: Any, paths: Iterable[Path]) -> Iterator[dict[str, str]]:
    """One CSV row per path, in input order, classifying decodable files in batched calls."""
    chunk: list[tuple[Path, Audio | str]] = []
    for path in paths:
        chunk.append((path, _decode(engine, path)))
        if len(chunk) >= RECORDINGS_PER_CALL:
            yield from _chunk_rows(engine, chunk)
            chunk = []
    yield from _chunk_rows(engine, chunk)


def _chunk_rows(engine: Any, chunk: list[tuple[Path, Audio | str]]) -> Iterator[dict[str, str]]:
    audios = [decoded for _, decoded in chunk if isinstance(decoded, Audio)]
    results = iter(engine.classify(audios))
    for path, decoded in chunk:
        if isinstance(decoded, str):
            yield _error_row(path, decoded, engine.classes)
        else:
            yield _result_row(path, next(results))


def _result_row(path: Path, result: Any) -> dict[str, str]:
    row = {
        "path": text_cell(str(path)),
        "label": text_cell(result.label),
        "decision": text_cell(result.decision),
        "confidence": f"{result.confidence:.{PROBABILITY_DIGITS}f}",
        "quality": text_cell(result.quality),
        "heart_rate_bpm": "" if result.heart_rate_bpm is None else f"{result.heart_rate_bpm:.{RATE_DIGITS}f}",
        "cycles": "" if result.segments is None else str(result.segments["cycles"]),
        "decision_reasons": text_cell("; ".join(result.decision_reasons)),
        "error": "",
    }
    row.update(
        {f"p_{name}": f"{value:.{PROBABILITY_DIGITS}f}" for name, value in result.probabilities.items()}
    )
    return row


def _error_row(path: Path, error: str, classes: Sequence[str]) -> dict[str, str]:
    row = dict.fromkeys(csv_columns(classes), "")
    row.update({"path": text_cell(str(path)), "error": text_cell(error)})
    return row


def write_predictions(engine: Any, paths: Iterable[Path], handle: IO[str]) -> int:
    """Write the CSV to ``handle``; returns the number of rows with an error."""
    writer = csv.DictWriter(handle, fieldnames=csv_columns(engine.classes), lineterminator="\n")
    writer.writeheader()
    failures = 0
    for row in predict_rows(engine, find_recordings(paths)):
        failures += bool(row["error"])
        writer.writerow(row)
    return failures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml predict``."""
    parser.add_argument("paths", nargs="+", type=Path, help="audio files or folders (searched recursively)")
    parser.add_argument("--model", type=Path, default=DEFAULT_SCREENING_BUNDLE, help="bundle directory")
    parser.add_argument("--out", type=Path, default=None, help="CSV file to write (default: standard output)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml predict``; exit status 0 even when some files fail."""
    from ml.inference import Engine, configure_threads

    configure_threads(1)
    # Loading numba and the bundle leaves a hundred thousand objects that live as
    # long as the process. Each full collection of the cyclic garbage collector
    # walked all of them (about 50 ms, three or four times in a thousand files,
    # once more at exit): none runs while they are made, and they are frozen out
    # of the collector's reach afterwards.
    gc.disable()
    try:
        engine = Engine.load(args.model)
    finally:
        gc.enable()
    gc.freeze()
    if args.out is None:
        failures = write_predictions(engine, args.paths, sys.stdout)
    else:
        with args.out.open("w", newline="", encoding="utf-8") as handle:
            failures = write_predictions(engine, args.paths, handle)
    if failures:
        print(f"{failures} file(s) could not be classified; see the error column", file=sys.stderr)
    return 0
