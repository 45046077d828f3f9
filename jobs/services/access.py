"""Who sees what: members see their organisations' batches; staff see all.

Everything outside a user's organisations is answered with 404, never 403, so
ids of other programs' batches do not leak. Model versions likewise: a
researcher's registration is seen by their own organisation (and staff) until
staff publish it.
"""

from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404

from jobs.models import Batch, Membership, ModelVersion, Organisation, Recording, Site

# Who may create sites, fit their calibrations and choose the organisation's
# default model (staff may everywhere).
CALIBRATING_ROLES = (Membership.Role.RESEARCHER, Membership.Role.ADMIN)
MANAGING_ROLES = CALIBRATING_ROLES


def visible_batches(user: Any) -> QuerySet[Batch]:
    if getattr(user, "is_staff", False):
        return Batch.objects.all()
    return Batch.objects.filter(organisation__membership__user=user)


def visible_recordings(user: Any) -> QuerySet[Recording]:
    if getattr(user, "is_staff", False):
        return Recording.objects.all()
    return Recording.objects.filter(organisation__membership__user=user)


def get_batch(user: Any, batch_id: UUID | str) -> Batch:
    batches = visible_batches(user).select_related("model_version", "organisation", "created_by", "site")
    try:
        return batches.get(pk=batch_id)
    except (Batch.DoesNotExist, ValueError, ValidationError) as exc:  # ValidationError: not a UUID
        raise Http404("No such batch") from exc


def get_recording(user: Any, recording_id: int | str) -> Recording:
    recordings = visible_recordings(user).select_related("batch", "batch__model_version")
    try:
        return recordings.get(pk=recording_id)
    except (Recording.DoesNotExist, ValueError) as exc:
        raise Http404("No such recording") from exc


def visible_sites(user: Any) -> QuerySet[Site]:
    if getattr(user, "is_staff", False):
        return Site.objects.all()
    return Site.objects.filter(organisation__membership__user=user)


def get_site(user: Any, site_id: int | str) -> Site:
    try:
        return visible_sites(user).select_related("organisation").get(pk=site_id)
    except (Site.DoesNotExist, ValueError) as exc:
        raise Http404("No such site") from exc


def has_role(user: Any, organisation: Organisation, roles: tuple[str, ...]) -> bool:
    """Staff, and members of the organisation in one of ``roles``."""
    if getattr(user, "is_staff", False):
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    return Membership.objects.filter(user=user, organisation=organisation, role__in=roles).exists()


def can_calibrate(user: Any, organisation: Organisation) -> bool:
    """Staff, and researchers or administrators of the organisation."""
    return has_role(user, organisation, CALIBRATING_ROLES)


def upload_organisation(user: Any, slug: str | None = None) -> Organisation:
    """The organisation a new batch belongs to: the one named, or the user's only one."""
    organisations = Organisation.objects.filter(membership__user=user).order_by("name")
    if slug:
        found = organisations.filter(slug=slug).first()
        if found is None:
            raise Http404(f"You are not a member of an organisation called {slug!r}")
        return found
    first_two = list(organisations[:2])
    if not first_two:
        raise Http404("You are not a member of any organisation")
    if len(first_two) > 1:
        raise ValueError("You belong to several organisations: name one with 'organisation'")
    return first_two[0]


def organisations_for(user: Any) -> QuerySet[Organisation]:
    """Organisations a user works in: their memberships, or all for staff."""
    if getattr(user, "is_staff", False):
        return Organisation.objects.order_by("name")
    return Organisation.objects.filter(membership__user=user).order_by("name")


# --- model versions ------------------------------------------------------------------


def visible_models(user: Any) -> QuerySet[ModelVersion]:
    """Staff see every version; others the published ones and their organisations' own."""
    versions = ModelVersion.objects.all()
    if getattr(user, "is_staff", False):
        return versions
    if not getattr(user, "is_authenticated", False):
        return versions.filter(published=True)
    own = Organisation.objects.filter(membership__user=user)
    return versions.filter(Q(published=True) | Q(organisation__in=own))


def usable_models(organisation: Organisation) -> QuerySet[ModelVersion]:
    """Versions that may read an organisation's recordings: published ones and its own."""
    return ModelVersion.objects.filter(Q(published=True) | Q(organisation=organisation))


def can_use_model(version: ModelVersion, organisation: Organisation) -> bool:
    return version.published or version.organisation_id == organisation.pk


def can_choose_models(user: Any, organisation: Organisation) -> bool:
    """Who may set or clear an organisation's default model: staff, its researchers and admins."""
    return has_role(user, organisation, MANAGING_ROLES)


def choosing_organisations(user: Any) -> QuerySet[Organisation]:
    """Organisations whose default model the user may choose."""
    if getattr(user, "is_staff", False):
        return Organisation.objects.order_by("name")
    return Organisation.objects.filter(membership__user=user, membership__role__in=MANAGING_ROLES).order_by(
        "name"
    )


def registering_organisation(user: Any, slug: str | None = None) -> Organisation | None:
    """The organisation a researcher's new model version belongs to.

    Staff register for everyone (None) unless they name one. Others: the one
    named, where they are a researcher or admin, or their only such organisation;
    ValueError when that is ambiguous, Http404 when the named one is not theirs.
    """
    if getattr(user, "is_staff", False) and not slug:
        return None
    candidates = choosing_organisations(user)
    if slug:
        found = candidates.filter(slug=slug).first()
        if found is None:
            raise Http404(f"You are not a researcher or administrator of an organisation called {slug!r}")
        return found
    first_two = list(candidates[:2])
    if not first_two:
        raise Http404("You are not a researcher or administrator of any organisation")
    if len(first_two) > 1:
        raise ValueError(
            "You are a researcher in several organisations: name the one the version belongs to "
            "with 'organisation'"
        )
    return first_two[0]
