"""``python -m ml compare``: train each architecture on the same split and tabulate.

Every architecture gets the same recordings, features, seed, augmentation and
epochs; the table (validation and held-out source groups, parameters, training
time, inference speed) replaces the block between the markers in the model
documentation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml import train_arguments, train_command
from ml.models import ARCHITECTURES

DEFAULT_DOC = Path("docs/models.md")
START_MARKER = "<!-- compare:start -->"
END_MARKER = "<!-- compare:end -->"
SPEED_WINDOWS = 2048
COLUMNS = (
    "architecture",
    "params",
    "train s",
    "windows/s",
    "val MAcc",
    "val AUC",
    "held-out MAcc",
    "held-out sens",
    "held-out spec",
    "held-out AUC",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml compare``."""
    train_arguments.add_common_arguments(parser)
    parser.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    parser.add_argument("--holdout", action="append", default=[], help="source group kept out; repeatable")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="markdown file to update")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")


def compare_one(
    args: argparse.Namespace, dataset: Any, architecture: str, config: Any, classes: Any
) -> dict[str, Any]:
    """Train one architecture into a scratch bundle; return its row values."""
    from ml.inference import Engine, load_model

    settings = train_arguments.settings_from(args)
    settings = type(settings)(**{**settings.__dict__, "architecture": architecture})
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / architecture
        started = time.perf_counter()
        metrics = train_command.fit_bundle(
            dataset,
            holdout=args.holdout,
            out_dir=out,
            classes=classes,
            config=config,
            settings=settings,
            name=f"compare-{architecture}",
            version="0",
            research_use=False,
        )
        seconds = time.perf_counter() - started
        engine = Engine.load(out)
        params = load_model(out, engine.manifest).count_params()
        windows = (
            np.random.default_rng(0).standard_normal((SPEED_WINDOWS, *config.window_shape)).astype(np.float32)
        )
        tick = time.perf_counter()
        engine.predict_windows(windows)
        speed = SPEED_WINDOWS / (time.perf_counter() - tick)
    held = metrics.get("holdout", {}).get("overall", {})
    return {
        "architecture": architecture,
        "params": params,
        "train_s": seconds,
        "windows_per_s": speed,
        "validation": metrics["validation"],
        "holdout": held,
    }


def table(rows: list[dict[str, Any]], *, caption: str) -> str:
    """Markdown table of the comparison."""
    lines = [caption, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        validation, held = row["validation"], row["holdout"]
        cells = [
            row["architecture"],
            f"{row['params']:,}",
            f"{row['train_s']:.0f}",
            f"{row['windows_per_s']:.0f}",
            _fmt(validation.get("macc")),
            _fmt(validation.get("roc_auc")),
            _fmt(held.get("macc")),
            _fmt(held.get("sensitivity")),
            _fmt(held.get("specificity")),
            _fmt(held.get("roc_auc")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def update_doc(doc: Path, block: str) -> None:
    """Replace the marked block in ``doc`` (appending markers when absent)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Models\n"
    replacement = f"{START_MARKER}\n{block}\n{END_MARKER}"
    if START_MARKER in text and END_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        text = head + replacement + rest.split(END_MARKER, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + replacement + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml compare``."""
    from ml.inference import configure_threads

    configure_threads(1)
    config = train_arguments.features_from(args)
    dataset = train_command.load_all(args, config)
    classes = train_command.class_order(dataset.labels, args.classes)
    rows = []
    for architecture in args.archs.split(","):
        rows.append(compare_one(args, dataset, architecture, config, classes))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "validation"}, default=str), flush=True)
    held = ", ".join(args.holdout) or "none"
    caption = (
        f"Same split for every model: validation is a 15% share stratified by source folder; "
        f"held out (never trained on): {held}. {args.epochs} epochs max (patience {args.patience}), "
        f"seed {args.seed}, features {config.kind} {config.fingerprint()}. windows/s: one thread."
    )
    block = table(rows, caption=caption)
    print(block)
    update_doc(args.doc, block)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n", encoding="utf-8")
    return 0
