"""`lubdub --help` and each command's --help end with examples of that command."""

import argparse

import pytest

from lubdub_client.main import build_parser

COMMANDS = [
    "submit", "status", "list", "results", "report", "cancel", "delete", "models", "reanalyze", "diff",
]  # fmt: skip


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(found.choices)


def test_the_main_help_lists_every_command_and_examples() -> None:
    parser = build_parser()
    text = parser.format_help()

    assert sorted(_commands(parser)) == sorted(COMMANDS)
    assert all(f"    {name}" in text for name in COMMANDS)
    examples = text.split("examples:\n")[1].splitlines()
    assert examples[0].strip().startswith("export LUBDUB_URL=") and "LUBDUB_TOKEN=" in examples[0]
    assert any(line.strip().startswith("lubdub submit ") for line in examples)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_commands_help_ends_with_examples_of_it(name: str) -> None:
    text = _commands(build_parser())[name].format_help()

    head, examples = text.split("\nexamples:\n")
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert head.startswith(f"usage: lubdub {name}")
    assert lines and all(line.startswith(f"lubdub {name}") for line in lines)
