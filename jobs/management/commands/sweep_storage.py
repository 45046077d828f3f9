"""Delete audio objects that no recording refers to, and reports of deleted batches."""

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs.services.lifecycle import ORPHAN_GRACE, sweep_orphans


class Command(BaseCommand):
    help = (
        "Delete pack and per-recording audio objects that no recording row refers to and that are "
        f"older than --grace-hours (default {ORPHAN_GRACE.total_seconds() / 3600:g}): what a crash between "
        "a batch's deletion and its objects' deletion, or an interrupted ingest, leaves behind; and "
        "report objects whose batch no longer exists (written while it was deleted)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace-hours", type=float, default=ORPHAN_GRACE.total_seconds() / 3600)

    def handle(self, *args: Any, **options: Any) -> None:
        removed = sweep_orphans(grace=datetime.timedelta(hours=options["grace_hours"]))
        self.stdout.write(f"{removed} unreferenced object(s) deleted")
