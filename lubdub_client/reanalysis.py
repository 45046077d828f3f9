"""`lubdub reanalyze` and `lubdub diff`: re-read stored recordings with another model version,
and see what changed between two versions.

    lubdub reanalyze --batch ID [--batch ID...] | --since DATE [--until DATE] | --analysed-by V | --all
                     [--model V] [--at TIME | --on-new-default] [--org SLUG] [--name N] [--wait]
    lubdub diff A B [--batch ID] [--json]

Versions may be of different kinds: a binary screening model against a multi-class
one is compared in the binary classes, the multi-class labels read through the
server's label map (the recordings whose label has no binary counterpart are
counted apart); a figure only one of them has is shown as n/a for the other.
"""

import argparse
import json
import sys
from typing import Any

from lubdub_client.args import add_command
from lubdub_client.batches import REPORTED_STATUSES, status_line, wait
from lubdub_client.errors import CliError
from lubdub_client.server import Client

DIFF_ROWS = 20
# The figures against ground truth a diff prints, by their key in the answer.
DIFF_FIGURES = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "macc": "MAcc",
}


def reanalyze(client: Client, args: argparse.Namespace) -> int:
    body = _request_body(args)
    created = client.json("POST", "/api/v1/reanalyses/", json=body)["batches"]
    for batch in created:
        when = batch.get("scheduled_for") or "when the next default model is registered"
        print(f"{batch['id']}\t{batch['organisation']}\t{batch['model_version']}\t{when}")
    if not args.wait:
        return 0
    results = [wait(client, batch["id"], quiet=args.quiet) for batch in created]
    for batch in results:
        print(status_line(batch), file=sys.stderr)
    return 0 if all(batch["status"] in REPORTED_STATUSES for batch in results) else 1


def _request_body(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.batch or args.since or args.until or args.analysed_by or args.all):
        raise CliError("say which recordings: --batch, --since/--until, --analysed-by or --all")
    if args.wait and (args.at or args.on_new_default):
        raise CliError("--wait only works for a re-analysis that starts now")
    when = "new_default" if args.on_new_default else "at" if args.at else "now"
    body: dict[str, Any] = {"batches": args.batch or [], "all": args.all, "when": when}
    optional = {
        "since": args.since,
        "until": args.until,
        "analysed_by": args.analysed_by,
        "model": args.model,
        "run_at": args.at,
        "organisation": args.org,
        "name": args.name,
    }
    body.update({key: value for key, value in optional.items() if value})
    return body


def diff(client: Client, args: argparse.Namespace) -> int:
    params = {"a": args.a, "b": args.b, **({"batch": args.batch} if args.batch else {})}
    found = client.json("GET", "/api/v1/models/diff/", params=params)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(format_diff(found))
    return 0


def format_diff(found: dict[str, Any]) -> str:
    read = found.get("read_by_both", found["compared"])
    lines = [f"{found['version_a']} -> {found['version_b']}: {read} recordings read by both"]
    if mapped := found.get("label_map"):
        lines.append(f"{mapped['version']} labels read as normal/abnormal (label map {mapped['map']})")
    lines += [left["reason"] for left in found.get("left_out", [])]
    lines.append(_agreement(found, read))
    lines += [f"  {flip['from']} -> {flip['to']}: {flip['count']}" for flip in found["flips"]]
    metrics = found["metrics"]
    if metrics["a"].get("count"):
        lines.append(f"against ground truth ({metrics['a']['count']} recordings):")
        for key, name in DIFF_FIGURES.items():
            # Versions with no reading in common: only a binary one has sensitivity and specificity.
            a, b = metrics["a"].get(key), metrics["b"].get(key)
            if a is not None or b is not None:
                lines.append(f"  {name}: {_percent(a)} -> {_percent(b)}")
    for change in found["changes"][:DIFF_ROWS]:
        lines.append(
            f"  {change['path']}: {change['label_a']} ({_top(change['probabilities_a'], change['label_a'])})"
            f" -> {change['label_b']} ({_top(change['probabilities_b'], change['label_b'])})"
        )
    if found["changed"] > DIFF_ROWS:
        lines.append(f"  ... {found['changed'] - DIFF_ROWS} more (use --json)")
    return "\n".join(lines)


def _agreement(found: dict[str, Any], read: int) -> str:
    rate = found["agreement_rate"]
    if rate is not None:
        return f"agreement: {rate:.1%} ({found['agreed']} agree, {found['changed']} changed)"
    # Read by both, but every one left out (a class with no binary counterpart).
    return "agreement: none of them could be compared" if read else "agreement: no recording read by both"


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "n/a"


def _top(probabilities: dict[str, float] | None, label: str | None) -> str:
    value = (probabilities or {}).get(label) if label is not None else None
    return f"{value:.2f}" if value is not None else "?"


def add_commands(commands: Any) -> None:
    """Add the subcommands to the `lubdub` parser's subparsers."""
    p = add_command(
        commands,
        "reanalyze",
        help="re-read stored recordings with a model version",
        examples=[
            "lubdub reanalyze --batch <batch> --model screening-3.1.0 --wait",
            "lubdub reanalyze --since 2026-01-01 --until 2026-03-31",
            "lubdub reanalyze --analysed-by screening-2.0.0 --on-new-default",
            "lubdub reanalyze --all --at 2026-12-01T02:00:00+00:00",
        ],
    )
    p.add_argument("--batch", action="append", metavar="ID", help="a batch to re-read (repeatable)")
    p.add_argument("--since", metavar="DATE", help="recordings uploaded on or after (YYYY-MM-DD)")
    p.add_argument("--until", metavar="DATE", help="recordings uploaded on or before (YYYY-MM-DD)")
    p.add_argument("--analysed-by", metavar="VERSION", help="recordings this version has read")
    p.add_argument("--all", action="store_true", help="every recording you may re-analyse")
    p.add_argument("--model", help="model version (default: the server's default)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--at", metavar="TIME", help="start at this time (ISO 8601, with a zone)")
    timing.add_argument(
        "--on-new-default", action="store_true", help="start when a new default is registered"
    )
    p.add_argument("--org", help="only this organisation (slug)")
    p.add_argument("--name")
    p.add_argument("--wait", action="store_true", help="wait until the re-analysis is finished")
    p.set_defaults(run=reanalyze)

    p = add_command(
        commands,
        "diff",
        help="what changed between two model versions",
        examples=["lubdub diff screening-3.0.0 screening-3.1.0", "lubdub diff 3 4 --batch <batch> --json"],
    )
    p.add_argument("a", help="version A (id, name-version or version)")
    p.add_argument("b", help="version B")
    p.add_argument("--batch", help="only recordings of this batch")
    p.add_argument("--json", action="store_true", help="the whole diff as JSON")
    p.set_defaults(run=diff)
