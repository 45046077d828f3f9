"""Create (if needed) a user and organisation and print the user's API token."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.text import slugify
from rest_framework.authtoken.models import Token

from jobs.models import Membership, Organisation


class Command(BaseCommand):
    help = "Print an API token for USER, creating the user and organisation if needed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--org", default="", help="Organisation name (created if missing).")
        parser.add_argument(
            "--role", default=Membership.Role.UPLOADER, choices=Membership.Role.values, help="Role in --org."
        )

    @transaction.atomic
    def handle(self, *args: Any, username: str, org: str, role: str, **options: Any) -> None:
        user, _ = get_user_model().objects.get_or_create(username=username)
        if org:
            organisation, _ = Organisation.objects.get_or_create(
                name=org, defaults={"slug": slugify(org)[:80]}
            )
            Membership.objects.get_or_create(user=user, organisation=organisation, defaults={"role": role})
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
