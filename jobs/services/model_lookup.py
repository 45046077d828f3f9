"""Looking model versions up: the default of an organisation, one by name, the ones a user may see.

The web process answers these on every upload and page; they read rows only,
so this module imports nothing of ``ml`` (registering and unpacking bundles,
which need it, live in jobs.services.registry).
"""

from django.contrib.auth.models import User
from django.db.models import QuerySet

from jobs.models import ModelVersion, Organisation
from jobs.services import access, defaults

Status = ModelVersion.Status


class UnknownModel(LookupError):
    pass


def default_model(organisation: Organisation | None = None) -> ModelVersion:
    """The organisation's own default while it is active, else the global default."""
    found = defaults.default_for(organisation)
    if found is None:
        raise UnknownModel("No default model is registered: run 'manage.py ensure_default_model'")
    return found


def resolve_model(
    reference: str | None,
    *,
    statuses: tuple[str, ...] = (Status.ACTIVE,),
    among: QuerySet[ModelVersion] | None = None,
    organisation: Organisation | None = None,
) -> ModelVersion:
    """The default model (the organisation's), or the one named `name-version`, `version` or by id.

    `among` limits the names to the versions a user may see (access.visible_models);
    one outside it is answered like one that does not exist.
    """
    if not reference:
        return default_model(organisation)
    versions = ModelVersion.objects.all() if among is None else among
    for candidate in versions.filter(status__in=statuses):
        if reference in (candidate.slug, candidate.version, str(candidate.pk)):
            return candidate
    states = " or ".join(statuses)
    raise UnknownModel(f"No {states} model version called {reference!r}")


def listed_models(user: User, *, include_all: bool = False) -> QuerySet[ModelVersion]:
    """Versions the user may see: active ones; with include_all also checking, rejected and retired."""
    versions = access.visible_models(user).select_related("registered_by", "organisation")
    return versions if include_all else versions.filter(status=Status.ACTIVE)
