"""Register the committed screening bundle as the default model when there is none."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.services.registry import RegistrationRefused, ensure_default_model
from ml.bundle import DEFAULT_SCREENING_BUNDLE
from ml.errors import BundleError


class Command(BaseCommand):
    help = "Register the shipped screening bundle (or --bundle) as the default model version, if none is."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bundle", type=Path, default=DEFAULT_SCREENING_BUNDLE)

    def handle(self, *args: Any, bundle: Path, **options: Any) -> None:
        try:
            version, created = ensure_default_model(bundle)
        except (BundleError, RegistrationRefused) as exc:
            raise CommandError(str(exc)) from exc
        state = "registered" if created else "already the default"
        self.stdout.write(f"{version.slug}: {state}")
