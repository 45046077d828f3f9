"""`lubdub`: submit recordings to a LubDub server and fetch what it found.

    lubdub submit PATH... [--name N] [--model V] [--site S] [--wait]    (submit)
    lubdub status [BATCH] | list | cancel BATCH | delete BATCH [--yes] | models   (batches)
    lubdub results BATCH [--format csv|json] [-o FILE]                   (reports)
    lubdub report BATCH [--format html|csv|json] [-o FILE|-]             (reports)
    lubdub reanalyze ... | diff A B                                      (reanalysis)

The server and token come from LUBDUB_URL and LUBDUB_TOKEN, or --url/--token.
Every error, a mistyped command included, is one line on stderr and a non-zero
exit status: a person reads it, a script checks the status.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lubdub_client import batches, reanalysis, reports, submit
from lubdub_client.args import Parser, examples_text
from lubdub_client.errors import CliError, one_line
from lubdub_client.server import Client


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lubdub",
        description="Heart-sound screening from the command line.\n\nThe server and token come from "
        "LUBDUB_URL and LUBDUB_TOKEN (make demo prints both),\nor --url and --token.",
        epilog=examples_text(
            [
                "export LUBDUB_URL=http://127.0.0.1:8000 LUBDUB_TOKEN=<token>",
                'lubdub submit recordings/ --name "March clinic" --wait',
                "lubdub list",
                "lubdub report <batch> -o -",
                "lubdub <command> --help",
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=os.environ.get("LUBDUB_URL", ""), help="server (LUBDUB_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("LUBDUB_TOKEN", ""), help="API token (LUBDUB_TOKEN)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (drawn only on a terminal anyway)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # In the order `lubdub --help` lists them: the daily round first.
    submit.add_commands(commands)
    batches.add_status_commands(commands)
    reports.add_commands(commands)
    batches.add_commands(commands)
    reanalysis.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # zipstream-ng logs a file date zip cannot hold, or a size that changed; unhandled,
    # that would be a second line on stderr. The client says what went wrong itself.
    quiet = logging.getLogger("zipstream")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.url, args.token)
        return int(args.run(client, args))
    except CliError as exc:
        print(f"lubdub: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`lubdub results B | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file to upload that the system refused to read
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lubdub: error: {where}{one_line(exc.strerror or str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lubdub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
