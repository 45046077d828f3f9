"""Users, organisations and API tokens for scripts (create_api_token, demo)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify
from rest_framework.authtoken.models import Token

from jobs.models import Membership, Organisation


@transaction.atomic
def ensure_member(username: str, organisation_name: str = "", role: str = Membership.Role.UPLOADER) -> Any:
    """The user (created if missing), made a member of the organisation (created if missing)."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    if organisation_name:
        organisation, _ = Organisation.objects.get_or_create(
            name=organisation_name, defaults={"slug": slugify(organisation_name)[:80]}
        )
        Membership.objects.get_or_create(user=user, organisation=organisation, defaults={"role": role})
    return user


def api_token(user: User) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)
