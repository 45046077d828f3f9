"""A page's signed-in user: the user model, never an anonymous user taken for one."""

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from jobs.pages.auth import signed_in


def test_it_returns_the_signed_in_user() -> None:
    request = RequestFactory().get("/")
    request.user = User(username="clinician")
    assert signed_in(request) is request.user


def test_it_refuses_an_anonymous_user() -> None:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    with pytest.raises(PermissionDenied):
        signed_in(request)
