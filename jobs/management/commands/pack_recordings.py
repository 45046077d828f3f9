"""Move recordings stored one object each into packs."""

from typing import Any

from django.core.management.base import BaseCommand

from jobs.services.repack import pack_legacy_recordings


class Command(BaseCommand):
    help = (
        "Move every recording still stored as an object of its own (recordings/<sha256>) into pack "
        "objects, 128 to a pack. The old objects stay until `manage.py sweep_storage` deletes them "
        "(once no row refers to them); objects already missing are listed and left as they are."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = pack_legacy_recordings()
        for key in sorted(done.missing):
            self.stderr.write(f"missing, left as it is: {key}")
        self.stdout.write(f"{done.rows} recording row(s) moved into {done.packs} pack(s)")
