"""Which organisation a signed-in person is working in, kept in the session."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from jobs.models import Organisation
from jobs.pages.auth import signed_in
from jobs.services import access

SESSION_KEY = "lubdub_organisation"


def current_organisation(request: HttpRequest) -> Organisation | None:
    """The organisation chosen in this session, falling back to the first one."""
    if not request.user.is_authenticated:
        return None
    if hasattr(request, "_lubdub_organisation"):
        return request._lubdub_organisation  # type: ignore[no-any-return]
    available = access.organisations_for(request.user)
    chosen = available.filter(pk=request.session.get(SESSION_KEY, 0)).first() or available.first()
    request._lubdub_organisation = chosen  # type: ignore[attr-defined]
    return chosen


@login_required
@require_POST
def switch_organisation(request: HttpRequest) -> HttpResponse:
    organisation = (
        access.organisations_for(signed_in(request)).filter(slug=request.POST.get("organisation", "")).first()
    )
    if organisation is None:
        raise Http404("No such organisation")
    request.session[SESSION_KEY] = organisation.pk
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    # Detail pages of the previous organisation would now be out of scope.
    if target.startswith(("/batches/", "/recordings/")):
        target = "/batches/"
    elif target.startswith("/sites/"):
        target = "/sites/"
    return HttpResponseRedirect(target)
