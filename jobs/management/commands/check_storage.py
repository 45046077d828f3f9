"""List recordings whose audio object is missing from storage."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.services.storage_check import missing_audio


class Command(BaseCommand):
    help = (
        "List stored recordings whose audio object is missing. Uploading the same recordings "
        "again restores the objects (ingest stores any content address whose object is gone)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        missing = 0
        for found in missing_audio():
            missing += 1
            self.stdout.write(f"{found.key}\t{found.rows} row(s)\te.g. {found.example_path}")
        if missing:
            raise CommandError(
                f"{missing} audio object(s) missing: upload those recordings again to restore them, "
                "then re-analyse the affected batches"
            )
        self.stdout.write("every stored recording has its audio object")
