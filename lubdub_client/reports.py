"""`lubdub results` and `lubdub report`: what a batch found, to stdout or a file.

lubdub results BATCH [--format csv|json] [-o FILE]
lubdub report BATCH [--format html|pdf|csv|json] [-o FILE|-]
"""

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lubdub_client.args import add_command, batch_id
from lubdub_client.batches import MIN_POLL_SECONDS, POLL_SECONDS, REPORTED_STATUSES, recording_rows
from lubdub_client.errors import CliError
from lubdub_client.server import Client, download

# Reports are written by a worker after the batch finishes: `report` waits this long for them.
REPORT_WAIT_SECONDS = 60.0
STDOUT = "-"


def results(client: Client, args: argparse.Namespace) -> int:
    if args.format == "csv":
        link = report_link(client, args.batch, "csv")
        write_output(args.output, download(link))
        return 0
    rows = list(recording_rows(client, args.batch))
    write_output(args.output, [json.dumps(rows, indent=2).encode() + b"\n"])
    return 0


def report(client: Client, args: argparse.Namespace) -> int:
    link = report_link(client, args.batch, args.format)
    write_output(args.output or default_report_name(args.batch, args.format), download(link))
    return 0


def default_report_name(batch_id: str, fmt: str) -> str:
    # The CSV report is the per-file results table; the others summarise the batch.
    return f"{'results' if fmt == 'csv' else 'report'}-{batch_id}.{fmt}"


def report_link(client: Client, batch_id: str, fmt: str, *, wait_seconds: float = REPORT_WAIT_SECONDS) -> str:
    """The signed link to one of the batch's reports, waiting while a worker writes them."""
    deadline = time.monotonic() + wait_seconds
    path = f"/api/v1/batches/{batch_id}/reports/{fmt}/"
    # Reports of a batch that just finished are usually written within a second:
    # the first retries come soon, then the pause doubles up to POLL_SECONDS.
    pause = MIN_POLL_SECONDS
    while True:
        try:
            return str(client.json("GET", path, params={"redirect": "0"})["url"])
        except CliError as exc:
            if exc.status != 404:
                raise
        batch = client.json("GET", f"/api/v1/batches/{batch_id}/")  # a 404 here: no such batch
        _check_reports_coming(batch)
        if time.monotonic() >= deadline:
            raise CliError(f"the reports of batch {batch_id} are not written yet; try again in a minute")
        time.sleep(pause)
        pause = min(pause * 2, POLL_SECONDS)


def _check_reports_coming(batch: dict[str, Any]) -> None:
    """CliError saying why, unless the batch's reports are on their way."""
    name, state = batch["id"], batch["status"]
    if not batch["progress"]["finished"]:
        raise CliError(f"batch {name} is {state}: its reports are written when it finishes")
    if state not in REPORTED_STATUSES:
        raise CliError(f"batch {name} is {state}: it has no reports")
    if batch.get("report_error"):
        retry = f"; tried again at {batch['report_retry_at']}" if batch.get("report_retry_at") else ""
        raise CliError(f"the reports of batch {name} could not be written: {batch['report_error']}{retry}")


def write_output(target: str | None, blocks: Iterable[bytes]) -> None:
    """Write to the file named, saying so on stderr, or to stdout when there is none or it is `-`."""
    if target is None or target == STDOUT:
        for block in blocks:
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    try:
        handle = path.open("wb")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with handle:
            for block in blocks:
                handle.write(block)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        # A download that failed half-way must not leave a file that looks complete.
        path.unlink(missing_ok=True)
        raise
    print(f"wrote {target} ({_size(path.stat().st_size)})", file=sys.stderr)


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    return f"{count / 1000:.1f} kB" if count < 10**6 else f"{count / 10**6:.1f} MB"


def add_commands(commands: Any) -> None:
    """Add results and report to the `lubdub` parser's subparsers."""
    p = add_command(
        commands,
        "results",
        help="per-file results, to stdout unless -o names a file",
        examples=[
            "lubdub results <batch> > results.csv",
            "lubdub results <batch> --format json -o rows.json",
        ],
    )
    p.add_argument("batch", type=batch_id)
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("-o", "--output", help="file to write (default and '-': stdout)")
    p.set_defaults(run=results)

    p = add_command(
        commands,
        "report",
        help="download the batch report (waits a minute for one being written)",
        examples=[
            "lubdub report <batch>                  # report-<batch>.html",
            "lubdub report <batch> --format pdf     # report-<batch>.pdf",
            "lubdub report <batch> --format csv     # results-<batch>.csv",
            "lubdub report <batch> --format json -o - | jq .counts",
        ],
    )
    p.add_argument("batch", type=batch_id)
    p.add_argument(
        "-o",
        "--output",
        help="file to write, '-' for stdout (default: report-<batch>.html/.pdf/.json, results-<batch>.csv)",
    )
    p.add_argument("--format", choices=["html", "pdf", "csv", "json"], default="html")
    p.set_defaults(run=report)
