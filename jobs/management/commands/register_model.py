"""Register a model bundle: check it, smoke-test it here, store it, record the version."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.services import registry
from ml.errors import BundleError


class Command(BaseCommand):
    help = (
        "Check a bundle directory (manifest, weights checksum, feature compatibility, a smoke "
        "prediction on a committed sample), store it and register it as a model version."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("bundle", type=Path, help="bundle directory (with manifest.json)")
        parser.add_argument("--default", action="store_true", help="make it the default model")

    def handle(self, *args: Any, bundle: Path, default: bool, **options: Any) -> None:
        try:
            version = registry.register_bundle(bundle, make_default=default)
        except registry.RegistrationRefused as exc:
            raise CommandError(exc.message) from exc
        except BundleError as exc:
            raise CommandError(exc.message) from exc
        smoke = version.smoke_test
        if smoke.get("passed"):
            self.stdout.write(f"smoke test on {smoke['sample']}: {smoke['label']} ({smoke['seconds']} s)")
        state = "default" if version.is_default else version.status
        self.stdout.write(f"{version.slug}: registered ({state}), id {version.pk}")
