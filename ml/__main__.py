"""``python -m ml <command>``: train, crossval, combine, evaluate, predict, export, bench and more."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

# (module.function adding the arguments, module.function running the command, help). Only
# the chosen command's modules are imported: some import TensorFlow, which costs seconds at
# start-up, and `predict` on a LiteRT bundle needs none of it.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("train_arguments.add_arguments", "train_command.run", "train a model and write a bundle"),
    "crossval": (
        "train_arguments.add_crossval_arguments",
        "train_command.run_crossval",
        "leave-one-source-out training and evaluation",
    ),
    "crossval-table": (
        "train_arguments.add_table_arguments",
        "train_command.run_table",
        "the leave-one-source-out table of a crossval result",
    ),
    "combine": (
        "composite.add_arguments",
        "composite.run",
        "one bundle from models of other features, calibrated on their held-out scores",
    ),
    "evaluate": ("evaluation.add_arguments", "evaluation.run", "evaluate a bundle on a labelled folder"),
    "compare": (
        "compare.add_arguments",
        "compare.run",
        "train and compare architectures, update docs/models.md",
    ),
    "predict": ("predict.add_arguments", "predict.run", "classify files or folders into a CSV"),
    "export": ("export.add_arguments", "export.run", "convert a bundle to TFLite and check parity"),
    "bench": ("bench.add_arguments", "bench.run", "measure recordings per second per stage"),
    "segmenter": (
        "segmenter_training.add_arguments",
        "segmenter_training.run",
        "train and score the heart-cycle segmenter",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in arguments if not word.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            _function(add_arguments)(subparser)
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _, run, _ = COMMANDS[args.command]
    return int(_function(run)(args))


def _function(path: str) -> Callable[..., Any]:
    """``module.function`` of the ml package, imported on first use."""
    module_name, _, function_name = path.rpartition(".")
    function: Callable[..., Any] = getattr(importlib.import_module(f"ml.{module_name}"), function_name)
    return function


if __name__ == "__main__":
    sys.exit(main())
