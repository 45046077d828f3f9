"""A user's batches: progress, waiting, the per-file rows, and the commands
`status`, `list`, `cancel`, `delete` and `models`.

    lubdub status [BATCH]
    lubdub list [-n N]
    lubdub cancel BATCH
    lubdub delete BATCH [--yes]
    lubdub models [--all]
"""

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from tqdm import tqdm

from lubdub_client.args import add_command, batch_id, positive
from lubdub_client.errors import CliError
from lubdub_client.server import Client

POLL_SECONDS = 1.0
# The shortest pause between two polls, for a batch (or its reports) about to be ready.
MIN_POLL_SECONDS = 0.1
# Statuses before the batch's recordings are all known (jobs.services.progress.UNPACKING).
UNPACKING_STATUSES = ("pending", "scheduled", "ingesting")
# Statuses whose batches get reports (cancelled and failed ones never do).
REPORTED_STATUSES = ("completed", "completed_with_errors")
DEFAULT_LIMIT = 20
BATCH_COLUMNS = ["ID", "STATUS", "FILES", "DONE", "FAILED", "REJECTED", "PENDING", "CREATED", "NAME"]
MODEL_COLUMNS = ["VERSION", "ARCHITECTURE", "CLASSES", "VALIDATION", "STATUS"]
# Counts read best aligned on their last digit.
NUMERIC = {"FILES", "DONE", "FAILED", "REJECTED", "PENDING"}


# --- one batch -------------------------------------------------------------------


def wait(client: Client, batch_id: str, *, quiet: bool, poll: float = POLL_SECONDS) -> dict[str, Any]:
    """The batch once it is finished, with a progress bar (on a terminal) meanwhile."""
    with tqdm(total=None, unit="file", desc="analyse", disable=bars_off(quiet)) as bar:
        while True:
            batch: dict[str, Any] = client.json("GET", f"/api/v1/batches/{batch_id}/")
            progress = batch["progress"]
            bar.total = files_to_analyse(progress)
            bar.n = progress["done"] + progress["failed"] + progress["skipped"]
            bar.refresh()
            if progress["finished"]:
                return batch
            time.sleep(next_poll(batch, longest=poll))


def next_poll(batch: dict[str, Any], *, longest: float = POLL_SECONDS) -> float:
    """Seconds until the batch is polled again: ``longest`` while its end is far, sooner near it.

    Half the server's estimate of the time left, between MIN_POLL_SECONDS and
    ``longest``: a batch of a few seconds is seen finished about a tenth of a
    second after it is, not up to a whole poll later, while a long one is still
    polled once a second until its last seconds. Without an estimate, or while
    the upload is still read and its size unknown (the estimate then counts only
    the rows written so far), the pause is ``longest``.
    """
    progress = batch["progress"]
    eta = progress.get("eta_seconds")
    unsized = batch.get("status") in UNPACKING_STATUSES and progress.get("expected_total") is None
    if eta is None or unsized:
        return longest
    return float(min(longest, max(MIN_POLL_SECONDS, eta / 2)))


def files_to_analyse(progress: dict[str, Any]) -> int:
    """The bar's total: the archive listing's count while ingest still writes rows (so the
    bar never shrinks back), less the files refused at upload. Servers without
    ``expected_total`` give the rows written so far."""
    total = max(progress["total"], progress.get("expected_total") or 0)
    return max(total - progress["rejected"], 0)


def bars_off(quiet: bool) -> bool | None:
    # None: tqdm draws bars only on a terminal, so logs and scripts get the result lines alone.
    return True if quiet else None


def status_line(batch: dict[str, Any]) -> str:
    """A batch's state and counts in one line, with why anything is missing."""
    p = batch["progress"]
    line = (
        f"{batch['id']} {batch['status']}: {p['total']} files, {p['done']} done, {p['failed']} failed, "
        f"{p['rejected']} rejected, {p['pending']} pending"
    )
    if batch.get("error_message"):
        line += f" ({batch['error_message']})"
    if batch.get("requeued_count"):
        line += f"; a worker stopped, {batch['requeued_count']} re-queued"
    if batch.get("report_error"):
        line += f"; reports not written: {batch['report_error']}"
    return line


def recording_rows(client: Client, batch_id: str) -> Iterator[dict[str, Any]]:
    """The batch's per-file rows, page after page."""
    page: str | None = f"/api/v1/batches/{batch_id}/recordings/"
    while page:
        data = client.json("GET", page)
        yield from data["results"]
        page = data["next"]


def decision_counts(client: Client, batch: dict[str, Any]) -> Counter[str]:
    """How many recordings of the batch (its detail, as `wait` returns it) got each
    decision: a class, `uncertain` or `re-record`."""
    counted = batch.get("decision_counts")
    if counted is not None:
        return Counter({str(decision): int(count) for decision, count in counted.items()})
    # Servers without the detail's counts: every row, page after page.
    # Predictions made before decisions existed have only their label.
    decided = (row.get("decision") or row.get("label") for row in recording_rows(client, batch["id"]))
    return Counter(decision for decision in decided if decision)


def decisions_line(counts: Counter[str]) -> str:
    if not counts:
        return "none (no recording was analysed)"
    # Uncertain is always said, 0 included: it is what a reader looks for first.
    special = ["uncertain", *(["re-record"] if counts["re-record"] else [])]
    classes = sorted(name for name in counts if name not in special)
    return ", ".join(f"{name} {counts[name]}" for name in [*classes, *special])


# --- commands --------------------------------------------------------------------


def status(client: Client, args: argparse.Namespace) -> int:
    if args.batch is None:
        return list_batches(client, args)
    print(status_line(client.json("GET", f"/api/v1/batches/{args.batch}/")))
    return 0


def list_batches(client: Client, args: argparse.Namespace) -> int:
    batches = recent_batches(client, args.limit)
    if not batches:
        print("no batches yet (lubdub submit uploads one)", file=sys.stderr)
        return 0
    print(format_table(BATCH_COLUMNS, [_batch_row(batch) for batch in batches]))
    return 0


def recent_batches(client: Client, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` batches the user can see, newest first (the API's order)."""
    found: list[dict[str, Any]] = []
    page: str | None = "/api/v1/batches/"
    while page and len(found) < limit:
        data = client.json("GET", page)
        found += data["results"]
        page = data["next"]
    return found[:limit]


def _batch_row(batch: dict[str, Any]) -> list[str]:
    p = batch["progress"]
    counts = [p["total"], p["done"], p["failed"], p["rejected"], p["pending"]]
    name = batch["name"] or batch.get("upload_name") or ""
    return [batch["id"], batch["status"], *map(str, counts), _when(batch["created_at"]), name]


def _when(stamp: str) -> str:
    """An API timestamp in the local time zone, to the minute."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def cancel(client: Client, args: argparse.Namespace) -> int:
    print(status_line(client.json("POST", f"/api/v1/batches/{args.batch}/cancel/")))
    return 0


def delete(client: Client, args: argparse.Namespace) -> int:
    # Read first: a wrong id fails before the question, and the question names what goes.
    batch = client.json("GET", f"/api/v1/batches/{args.batch}/")
    name = batch["name"] or batch.get("upload_name") or "unnamed"
    if not args.yes:
        _confirm(
            f"Delete batch {batch['id']} ({name}, {batch['progress']['total']} files) "
            "with its results, reports and stored audio?"
        )
    client.request("DELETE", f"/api/v1/batches/{args.batch}/")
    print(f"deleted {batch['id']} ({name})")
    return 0


def _confirm(question: str) -> None:
    """CliError unless the person at the terminal answers yes."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise CliError("not deleted: no terminal to ask; pass --yes to delete without asking")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CliError("not deleted")


def models(client: Client, args: argparse.Namespace) -> int:
    versions = client.json("GET", "/api/v1/models/", params={"all": "true"} if args.all else None)
    if not versions:
        print("no model versions registered (manage.py register_model BUNDLE --default)", file=sys.stderr)
        return 0
    print(format_table(MODEL_COLUMNS, [_model_row(version) for version in versions]))
    return 0


def _model_row(version: dict[str, Any]) -> list[str]:
    state = f"{version['status']}, default" if version["is_default"] else version["status"]
    classes = ", ".join(version["classes"])
    return [version["slug"], version["architecture"], classes, _validation(version["metrics"]), state]


def _validation(metrics: dict[str, Any] | None) -> str:
    """The bundle's validation figures, named as on the Models page."""
    found = (metrics or {}).get("validation") or {}
    names = [("macc", "MAcc"), ("sensitivity", "sensitivity"), ("specificity", "specificity")]
    figures = [f"{label} {found[key]:.2f}" for key, label in names if isinstance(found.get(key), int | float)]
    if not figures and isinstance(found.get("accuracy"), int | float):
        figures = [f"accuracy {found['accuracy']:.2f}"]
    return ", ".join(figures)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; counts aligned right, the last column left ragged."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).rjust(width) if name in NUMERIC else str(cell).ljust(width)
            for name, cell, width in zip(columns, cells, widths, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join(line(cells) for cells in [columns, *rows])


# --- the parser --------------------------------------------------------------------


def add_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--limit",
        type=positive,
        default=DEFAULT_LIMIT,
        help=f"how many batches (default {DEFAULT_LIMIT})",
    )


def add_status_commands(commands: Any) -> None:
    """Add status and list to the `lubdub` parser's subparsers."""
    p = add_command(
        commands,
        "status",
        help="a batch's progress; without a batch, the recent batches (as lubdub list)",
        examples=["lubdub status 3f2b0c9e-7d1a-4c55-9a57-0d6f1e2b8a41", "lubdub status"],
    )
    p.add_argument("batch", nargs="?", type=batch_id)
    add_limit(p)
    p.set_defaults(run=status)

    p = add_command(
        commands,
        "list",
        help="recent batches, newest first: id, status, counts, created",
        examples=["lubdub list", "lubdub list -n 100"],
    )
    add_limit(p)
    p.set_defaults(run=list_batches)


def add_commands(commands: Any) -> None:
    """Add cancel, delete and models to the `lubdub` parser's subparsers."""
    p = add_command(
        commands,
        "cancel",
        help="stop a running batch; finished recordings keep their results",
        examples=["lubdub cancel 3f2b0c9e-7d1a-4c55-9a57-0d6f1e2b8a41"],
    )
    p.add_argument("batch", type=batch_id)
    p.set_defaults(run=cancel)

    p = add_command(
        commands,
        "delete",
        help="delete a batch with its results, reports and stored audio, after asking",
        examples=["lubdub delete <batch>", "lubdub delete <batch> --yes   # in a script: no question"],
    )
    p.add_argument("batch", type=batch_id)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=delete)

    p = add_command(
        commands,
        "models",
        help="the registered model versions, the default marked",
        examples=["lubdub models", "lubdub models --all   # also checking, rejected and retired versions"],
    )
    p.add_argument("--all", action="store_true", help="also versions that are checking, rejected or retired")
    p.set_defaults(run=models)
