"""argparse as every `lubdub` command uses it: one-line usage errors, examples in --help."""

import argparse
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

from lubdub_client.errors import one_line


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other error of the client."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"lubdub: error: {one_line(message)} (see {self.prog} --help)\n")


def add_command(commands: Any, name: str, *, help: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=examples_text(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def examples_text(lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def batch_id(text: str) -> str:
    """An argparse type: a batch id is a UUID, so a typo is caught before the server is asked."""
    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch id (lubdub list shows them)") from exc


def positive(text: str) -> int:
    """An argparse type: a whole number from 1."""
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return int(text)
