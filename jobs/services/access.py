"""Who sees what, and who may do what: the one place for roles and visibility.

Members see their organisations' batches; staff see all. Everything outside a
user's organisations is answered with 404, never 403, so ids of other
programs' batches do not leak. Model versions likewise: a researcher's
registration is seen by their own organisation (and staff) until staff publish
it. Researchers and administrators (RESEARCH_ROLES) create sites, fit their
calibrations, register model versions, choose their organisation's default
and request re-analyses; administrators alone manage webhooks; any member may
review a recording; staff may everything.
"""

from typing import TypeVar
from uuid import UUID

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from jobs.models import Batch, Membership, ModelVersion, Organisation, Recording, Site
from jobs.services.refusals import Refused

RESEARCH_ROLES = (Membership.Role.RESEARCHER, Membership.Role.ADMIN)
ADMIN_ROLES = (Membership.Role.ADMIN,)

Scoped = TypeVar("Scoped", bound=Model)


def is_staff(user: User) -> bool:
    return bool(getattr(user, "is_staff", False))


def _scoped(objects: QuerySet[Scoped], user: User) -> QuerySet[Scoped]:
    """All of them for staff, else those of the user's organisations."""
    return objects if is_staff(user) else objects.filter(organisation__membership__user=user)


def visible_batches(user: User) -> QuerySet[Batch]:
    return _scoped(Batch.objects.all(), user)


def visible_recordings(user: User) -> QuerySet[Recording]:
    return _scoped(Recording.objects.all(), user)


def get_batch(user: User, batch_id: UUID | str) -> Batch:
    batches = visible_batches(user).select_related("model_version", "organisation", "created_by", "site")
    try:
        return batches.get(pk=batch_id)
    except (Batch.DoesNotExist, ValueError, ValidationError) as exc:  # ValidationError: not a UUID
        raise Http404("No such batch") from exc


def get_recording(user: User, recording_id: int | str) -> Recording:
    recordings = visible_recordings(user).select_related("batch", "batch__model_version")
    try:
        return recordings.get(pk=recording_id)
    except (Recording.DoesNotExist, ValueError) as exc:
        raise Http404("No such recording") from exc


def visible_sites(user: User) -> QuerySet[Site]:
    return _scoped(Site.objects.all(), user)


def get_site(user: User, site_id: int | str) -> Site:
    try:
        return visible_sites(user).select_related("organisation").get(pk=site_id)
    except (Site.DoesNotExist, ValueError) as exc:
        raise Http404("No such site") from exc


def member_organisations(user: User, roles: tuple[str, ...] | None = None) -> QuerySet[Organisation]:
    """The organisations the user is a member of (in one of ``roles``), staff or not."""
    if not getattr(user, "is_authenticated", False):
        return Organisation.objects.none()
    # One filter() call, so that the user and the role are those of the same membership.
    role = {} if roles is None else {"membership__role__in": roles}
    return Organisation.objects.filter(membership__user=user, **role).order_by("name")


def organisations_for(user: User) -> QuerySet[Organisation]:
    """Organisations a user works in: their memberships, or all for staff."""
    return Organisation.objects.order_by("name") if is_staff(user) else member_organisations(user)


def research_organisations(user: User) -> QuerySet[Organisation]:
    """Organisations the user is a researcher or administrator of: all for staff."""
    return (
        Organisation.objects.order_by("name")
        if is_staff(user)
        else member_organisations(user, RESEARCH_ROLES)
    )


def has_role(user: User, organisation: Organisation | int, roles: tuple[str, ...]) -> bool:
    """Staff, and members of the organisation in one of ``roles``."""
    if is_staff(user):
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    return Membership.objects.filter(user=user, organisation=organisation, role__in=roles).exists()


def is_member(user: User, organisation: Organisation | int) -> bool:
    """A member of the organisation, whatever the role; staff only where they are members."""
    if not getattr(user, "is_authenticated", False):
        return False
    return Membership.objects.filter(user=user, organisation=organisation).exists()


def can_calibrate(user: User, organisation: Organisation) -> bool:
    """Staff, and researchers or administrators of the organisation."""
    return has_role(user, organisation, RESEARCH_ROLES)


def can_administer(user: User, organisation: Organisation) -> bool:
    """Staff, and the organisation's administrators (webhook secrets and delivery logs)."""
    return has_role(user, organisation, ADMIN_ROLES)


def upload_organisation(user: User, slug: str | None = None) -> Organisation:
    """The organisation a new batch belongs to: the one named, or the user's only one."""
    return _the_one(
        member_organisations(user),
        slug,
        unknown=f"You are not a member of an organisation called {slug!r}",
        none="You are not a member of any organisation",
        several="You belong to several organisations: name one with 'organisation'",
    )


def _the_one(
    candidates: QuerySet[Organisation], slug: str | None, *, unknown: str, none: str, several: str
) -> Organisation:
    """The candidate named by ``slug``, or the only one; Http404, or Refused when there are several."""
    if slug:
        found = candidates.filter(slug=slug).first()
        if found is None:
            raise Http404(unknown)
        return found
    first_two = list(candidates[:2])
    if not first_two:
        raise Http404(none)
    if len(first_two) > 1:
        raise Refused("organisation_required", several)
    return first_two[0]


# --- model versions ------------------------------------------------------------------


def visible_models(user: User) -> QuerySet[ModelVersion]:
    """Staff see every version; others the published ones and their organisations' own."""
    versions = ModelVersion.objects.all()
    if is_staff(user):
        return versions
    return versions.filter(Q(published=True) | Q(organisation__in=member_organisations(user)))


def usable_models(organisation: Organisation) -> QuerySet[ModelVersion]:
    """Versions that may read an organisation's recordings: published ones and its own."""
    return ModelVersion.objects.filter(Q(published=True) | Q(organisation=organisation))


def can_use_model(version: ModelVersion, organisation: Organisation) -> bool:
    return version.published or version.organisation_id == organisation.pk


def can_manage_models(user: User) -> bool:
    """Who may register versions and request re-analyses: staff, and researchers or
    administrators of any organisation."""
    return is_staff(user) or member_organisations(user, RESEARCH_ROLES).exists()


def can_govern_models(user: User) -> bool:
    """Staff only: the global default, publishing and retirement apply to every organisation.

    A researcher of one organisation would otherwise decide which model reads
    every other organisation's uploads.
    """
    return is_staff(user)


def can_choose_models(user: User, organisation: Organisation) -> bool:
    """Who may set or clear an organisation's default model: staff, its researchers and admins."""
    return has_role(user, organisation, RESEARCH_ROLES)


def registering_organisation(user: User, slug: str | None = None) -> Organisation | None:
    """The organisation a researcher's new model version belongs to.

    Staff register for everyone (None) unless they name one. Others: the one
    named, where they are a researcher or admin, or their only such organisation;
    Refused when that is ambiguous, Http404 when the named one is not theirs.
    """
    if is_staff(user) and not slug:
        return None
    return _the_one(
        research_organisations(user),
        slug,
        unknown=f"You are not a researcher or administrator of an organisation called {slug!r}",
        none="You are not a researcher or administrator of any organisation",
        several=(
            "You are a researcher in several organisations: name the one the version belongs to "
            "with 'organisation'"
        ),
    )
