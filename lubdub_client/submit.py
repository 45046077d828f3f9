"""`lubdub submit`: upload files, folders or a zip as one batch.

    lubdub submit PATH... [--name N] [--model V] [--org SLUG] [--site S] [--webhook URL] [--wait] [--resume]

A folder or several files are zipped while they stream. The upload carries an
Idempotency-Key, so a retry after a 503 never creates a second batch. Above
LUBDUB_RESUMABLE_ABOVE (64 MiB) the upload goes in parts instead
(lubdub_client.resumable), and running the command again continues it.
"""

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lubdub_client import batches, resumable
from lubdub_client.args import add_command
from lubdub_client.server import Client
from lubdub_client.upload import MultipartBody, upload_body


def submit(client: Client, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    fields = {
        "name": args.name or "",
        "model": args.model or "",
        "organisation": args.org or "",
        "site": args.site or "",
        "webhook_url": args.webhook or "",
    }
    bars_off = batches.bars_off(args.quiet)
    large = resumable.large_source(paths, force=args.resume, quiet=bars_off)
    if large is not None:
        batch = resumable.ResumableUpload(client, large, fields, quiet=bars_off).run(resume_only=args.resume)
    else:
        batch = _send_whole(client, upload_body(paths, fields), quiet=bars_off)
    print(batch["id"])
    if args.wait:
        batch = batches.wait(client, batch["id"], quiet=args.quiet)
        print(batches.status_line(batch), file=sys.stderr)
        counts = batches.decision_counts(client, batch)
        print(f"decisions: {batches.decisions_line(counts)}", file=sys.stderr)
        print(f"web: {client.web_link(batch['id'])}", file=sys.stderr)
        return 0 if batch["status"] in batches.REPORTED_STATUSES else 1
    return 0


def _send_whole(client: Client, body: MultipartBody, *, quiet: bool | None) -> Any:
    """One request with the whole file."""
    with tqdm(total=body.file_size, unit="B", unit_scale=True, desc="upload", disable=quiet) as bar:
        body.progress = bar
        # One key per invocation: the server answers a retry with the batch it already made.
        headers = {"Content-Type": body.content_type, "Idempotency-Key": uuid.uuid4().hex}
        return client.json("POST", "/api/v1/batches/", data=body, headers=headers)


def add_commands(commands: Any) -> None:
    """Add submit to the `lubdub` parser's subparsers."""
    p = add_command(
        commands,
        "submit",
        help="upload files, folders or a zip as one batch and print its id",
        examples=[
            'lubdub submit recordings/ --name "March clinic" --wait',
            'lubdub submit a0001.wav a0002.wav --site "Ward 3"',
            "lubdub submit archive.zip --model screening-3.1.0",
            "lubdub submit archive.zip --webhook https://example.org/lubdub-hook",
            "lubdub submit big-archive.zip --resume   # continue an upload that was cut off",
        ],
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--name")
    p.add_argument("--model", help="model version (default: the server's default; lubdub models lists them)")
    p.add_argument("--org", help="organisation slug, when you belong to several")
    p.add_argument(
        "--site", help="site name (or id) the recordings come from (default: the organisation's default site)"
    )
    p.add_argument(
        "--webhook",
        metavar="URL",
        help="post a signed summary to this https URL when the batch finishes "
        "(default: the organisation's default webhook)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the batch is finished, then print its counts per decision and its web page",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted upload of these files, sending only the parts the server lacks "
        "(a plain rerun does the same; with --resume there must be one to continue)",
    )
    p.set_defaults(run=submit)
