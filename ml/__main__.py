"""``python -m ml <command>``: train, crossval, evaluate, compare, predict, export, bench, segmenter."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# (module, function adding the arguments, function running the command, help). Only the
# chosen command's module is imported: some import TensorFlow, which costs seconds at
# start-up, and `predict` on a LiteRT bundle needs none of it.
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "train": ("train_command", "add_arguments", "run", "train a model and write a bundle"),
    "crossval": (
        "train_command",
        "add_crossval_arguments",
        "run_crossval",
        "leave-one-source-out training and evaluation",
    ),
    "crossval-table": (
        "train_command",
        "add_table_arguments",
        "run_table",
        "the leave-one-source-out table of a crossval result",
    ),
    "evaluate": ("evaluation", "add_arguments", "run", "evaluate a bundle on a labelled folder"),
    "compare": ("compare", "add_arguments", "run", "train and compare architectures, update docs/models.md"),
    "predict": ("predict", "add_arguments", "run", "classify files or folders into a CSV"),
    "export": ("export", "add_arguments", "run", "convert a bundle to TFLite and check parity"),
    "bench": ("bench", "add_arguments", "run", "measure recordings per second per stage"),
    "segmenter": ("segmenter_training", "add_arguments", "run", "train and score the heart-cycle segmenter"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in arguments if not word.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, add_name, _, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text)
        if name == chosen:
            getattr(importlib.import_module(f"ml.{module_name}"), add_name)(subparser)
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module_name, _, run_name, _ = COMMANDS[args.command]
    return int(getattr(importlib.import_module(f"ml.{module_name}"), run_name)(args))


if __name__ == "__main__":
    sys.exit(main())
