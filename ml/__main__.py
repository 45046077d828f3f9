"""``python -m ml <command>``: train, crossval, evaluate, compare, predict, export, bench."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _commands() -> dict[str, Command]:
    from ml import evaluation, train_command

    commands: dict[str, Command] = {
        "train": ("train a model and write a bundle", train_command.add_arguments, train_command.run),
        "crossval": (
            "leave-one-source-out training and evaluation",
            train_command.add_crossval_arguments,
            train_command.run_crossval,
        ),
        "crossval-table": (
            "the leave-one-source-out table of a crossval result",
            train_command.add_table_arguments,
            train_command.run_table,
        ),
        "evaluate": ("evaluate a bundle on a labelled folder", evaluation.add_arguments, evaluation.run),
    }
    for name, module_name, help_text in (
        ("compare", "compare", "train and compare architectures, update docs/models.md"),
        ("predict", "predict", "classify files or folders into a CSV"),
        ("export", "export", "convert a bundle to TFLite and check parity"),
        ("bench", "bench", "measure recordings per second per stage"),
        ("segmenter", "segmenter_training", "train and score the heart-cycle segmenter"),
    ):
        module = _optional(module_name)
        if module is not None:
            commands[name] = (help_text, module.add_arguments, module.run)
    return commands


def _optional(name: str) -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(f"ml.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"ml.{name}":
            raise
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (help_text, add_arguments, runner) in _commands().items():
        add_arguments(subparsers.add_parser(name, help=help_text))
        runners[name] = runner
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
