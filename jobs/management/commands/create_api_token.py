"""Create (if needed) a user and organisation and print the user's API token."""

from typing import Any

from django.core.management.base import BaseCommand

from jobs.models import Membership
from jobs.services.accounts import api_token, ensure_member


class Command(BaseCommand):
    help = "Print an API token for USER, creating the user and organisation if needed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--org", default="", help="Organisation name (created if missing).")
        parser.add_argument(
            "--role", default=Membership.Role.UPLOADER, choices=Membership.Role.values, help="Role in --org."
        )

    def handle(self, *args: Any, username: str, org: str, role: str, **options: Any) -> None:
        self.stdout.write(api_token(ensure_member(username, org, role)))
