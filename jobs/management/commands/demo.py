"""`make demo`: the committed PhysioNet sample, end to end through the running app.

Creates a demo organisation, user and token, zips samples/physionet/*.wav with
its labels.csv on the fly, submits it through the real API (as the lubdub CLI
does), waits, and prints the per-file table, the metrics, where to look and,
last, the line that points the lubdub CLI at this server as the demo user.
"""

import json
import os
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.services.accounts import api_token, ensure_member
from lubdub_client.batches import recording_rows, wait
from lubdub_client.errors import CliError
from lubdub_client.server import Client
from lubdub_client.upload import zip_body

SAMPLES = Path(settings.BASE_DIR) / "samples" / "physionet"
ORGANISATION = "Demo screening program"
USERNAME = "demo"


class Command(BaseCommand):
    help = "Process the sample archive through the running web and worker processes."

    def add_arguments(self, parser: Any) -> None:
        default = f"http://127.0.0.1:{os.environ.get('LUBDUB_WEB_PORT', '8000')}"
        parser.add_argument("--url", default=default, help="the running web process")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        user = ensure_member(USERNAME, ORGANISATION)
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.save(update_fields=["password"])
        token = api_token(user)
        client = Client(url, token)
        try:
            batch = self._submit(client)
            batch = wait(client, batch["id"], quiet=False)
            rows = self._rows(client, batch["id"])
            summary = self._summary(client, batch["id"])
        except CliError as exc:
            raise CommandError(f"{exc} (is the app running? 'make up')") from exc
        self._print_table(rows)
        self._print_summary(batch, summary)
        self._print_urls(url, batch, password)
        self._print_cli_setup(url, token)

    def _submit(self, client: Client) -> dict[str, Any]:
        files = sorted(SAMPLES.glob("*.wav")) + [SAMPLES / "labels.csv"]
        entries = [(path.name, path) for path in files]
        body = zip_body({"name": "PhysioNet 2016 sample"}, "physionet-sample.zip", entries)
        headers = {"Content-Type": body.content_type}
        batch: dict[str, Any] = client.json("POST", "/api/v1/batches/", data=body, headers=headers)
        self.stdout.write(f"submitted {len(entries) - 1} recordings as batch {batch['id']}")
        return batch

    def _rows(self, client: Client, batch_id: str) -> list[dict[str, Any]]:
        return list(recording_rows(client, batch_id))

    def _summary(self, client: Client, batch_id: str) -> dict[str, Any]:
        for _ in range(60):
            reports = client.json("GET", f"/api/v1/batches/{batch_id}/reports/")
            if any(report["format"] == "json" for report in reports):
                link = client.json(
                    "GET", f"/api/v1/batches/{batch_id}/reports/json/", params={"redirect": "0"}
                )
                summary: dict[str, Any] = requests.get(link["url"], timeout=30).json()
                return summary
            time.sleep(0.5)
        raise CommandError("the reports were not written within 30 s (see var/log/worker-bulk.log)")

    def _print_table(self, rows: list[dict[str, Any]]) -> None:
        columns = [f"{'file':<14}", f"{'truth':<9}", f"{'result':<9}", f"{'decision':<10}", f"{'conf':>5}"]
        header = " ".join([*columns, f"{'quality':<8}", f"{'bpm':>5}"]) + "  status"
        self.stdout.write("\n" + header + "\n" + "-" * len(header))
        for row in rows:
            confidence = f"{row['confidence']:.2f}" if row["confidence"] is not None else ""
            bpm = f"{row['heart_rate_bpm']:.0f}" if row["heart_rate_bpm"] else ""
            mark = "" if not row["truth"] or row["truth"] == row["label"] else "  <- differs"
            self.stdout.write(
                f"{row['path']:<14} {row['truth'] or '':<9} {row['label'] or '':<9} "
                f"{row.get('decision') or '':<10} {confidence:>5} "
                f"{row['quality'] or '':<8} {bpm:>5}  {row['status']}{mark}"
            )

    def _print_summary(self, batch: dict[str, Any], summary: dict[str, Any]) -> None:
        counts = summary["counts"]
        by_status, by_class = json.dumps(counts["by_status"]), json.dumps(counts["by_class"])
        by_decision = json.dumps(counts.get("by_decision", {}))
        self.stdout.write(f"\n{batch['status']}: {by_status}, classes {by_class}, decisions {by_decision}")
        if summary.get("shift_warning"):
            self.stdout.write(f"warning: {summary['shift_warning']}")
        metrics = summary.get("metrics")
        if metrics:
            figures = ", ".join(
                f"{name} {metrics[key]:.2f}"
                for key, name in [("sensitivity", "sensitivity"), ("specificity", "specificity"),
                                  ("macc", "MAcc"), ("accuracy", "accuracy")]
                if metrics.get(key) is not None
            )  # fmt: skip
            self.stdout.write(f"against labels.csv ({metrics['labelled']} files): {figures}")
            self.stdout.write(
                "  (the shipped model was trained on these PhysioNet folders, so this is no test "
                "of it: docs/models.md has its figures on sites it never saw)"
            )
            self.stdout.write(
                f"confusion (rows truth, columns predicted, {metrics['confusion_matrix']['classes']}):"
            )
            for row in metrics["confusion_matrix"]["rows_truth_columns_predicted"]:
                self.stdout.write(f"    {row}")
        timings = summary["timings"]
        if timings.get("wall_seconds"):
            rate = timings["recordings_per_second"]
            self.stdout.write(f"upload to done: {timings['wall_seconds']:.1f} s ({rate:.1f} recordings/s)")

    def _print_urls(self, url: str, batch: dict[str, Any], password: str) -> None:
        flower = f"http://127.0.0.1:{os.environ.get('LUBDUB_FLOWER_PORT', '5555')}/"
        lines = [
            ("web", f"{url}/batches/{batch['id']}/  (log in as {USERNAME} / {password})"),
            ("report", f"{url}/batches/{batch['id']}/reports/html"),
            ("API", f"{url}/api/v1/batches/{batch['id']}/  (token: LUBDUB_TOKEN below)"),
            ("API docs", f"{url}/api/docs/"),
            ("Flower", f"{flower}  (user and password: FLOWER_BASIC_AUTH in .services/env)"),
        ]
        self.stdout.write("")
        for name, value in lines:
            self.stdout.write(f"{name + ':':<10} {value}")

    def _print_cli_setup(self, url: str, token: str) -> None:
        # The one place the token is shown: the terminal of whoever ran make demo, ready to paste.
        self.stdout.write("\nTo use the lubdub client (.venv/bin/lubdub) as the demo user, paste:")
        self.stdout.write(f"export LUBDUB_URL={shlex.quote(url)} LUBDUB_TOKEN={shlex.quote(token)}")
