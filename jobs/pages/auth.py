"""The signed-in user of a page, typed as the user model.

Pages behind ``login_required`` only ever see a signed-in user, but Django types
``request.user`` as a user or an anonymous one; the services' rules take the user
model.
"""

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def signed_in(request: HttpRequest) -> User:
    """``request.user`` of a login-required view (refused, not assumed, if it is anonymous)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("sign in first")
    return user
