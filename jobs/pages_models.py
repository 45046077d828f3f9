"""Model pages: the registry with drift flags, one version's metrics, card and drift, and diffs.

A version of another organisation that staff have not published answers 404,
as in the API. Staff change the global default, publish and retire; an
organisation's researchers and administrators choose its own default.
"""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from jobs.forms import ReanalysisForm
from jobs.models import Batch, ModelVersion, Organisation
from jobs.pages.auth import signed_in
from jobs.services import access, comparison, defaults, drift, model_lookup, reanalysis, registry

# Versions a diff may name: the ones in use and the retired ones whose readings are kept.
COMPARABLE = (ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED)
CHANGES_PER_PAGE = 50


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    recordings = access.visible_recordings(user)
    versions = list(model_lookup.listed_models(user, include_all=True))
    flagged = {
        version.pk: drift.version_drift(version, recordings).flagged
        for version in versions
        if version.status == ModelVersion.Status.ACTIVE
    }
    rows = [(version, flagged.get(version.pk)) for version in versions]
    return render(request, "jobs/models.html", {"rows": rows, "can_manage": access.can_manage_models(user)})


@login_required
def model_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    user = signed_in(request)
    version = _version(version_id, user)
    return _render_detail(request, version, ReanalysisForm(version=version, user=user))


@login_required
@require_POST
def model_reanalyse(request: HttpRequest, version_id: int) -> HttpResponse:
    """Start (or schedule) a re-analysis of stored recordings with this version."""
    user = signed_in(request)
    if not access.can_manage_models(user):
        raise PermissionDenied("Only researchers and staff can request a re-analysis.")
    version = _version(version_id, user)
    form = ReanalysisForm(request.POST, version=version, user=user)
    if not form.is_valid():
        return _render_detail(request, version, form, status=400)
    data = form.cleaned_data
    selection = reanalysis.Selection(
        since=data["since"] if data["scope"] == "dates" else None,
        until=data["until"] if data["scope"] == "dates" else None,
        analysed_by=data["analysed_by"].pk if data["scope"] == "analysed_by" else None,
        everything=data["scope"] == "all",
    )
    try:
        batches = reanalysis.request_reanalysis(
            user,
            selection=selection,
            model_version=version,
            when=reanalysis.AT if data["run_at"] else reanalysis.NOW,
            run_at=data["run_at"],
            name=data["name"],
        )
    except reanalysis.ReanalysisRefused as exc:
        form.add_error(None, exc.message)
        return _render_detail(request, version, form, status=exc.status)
    started = "scheduled" if data["run_at"] else "started"
    messages.success(request, f"Re-analysis with {version.slug} {started}: {len(batches)} batch(es).")
    if len(batches) == 1:
        return redirect("batch-detail", batch_id=batches[0].pk)
    return redirect("model-detail", version_id=version.pk)


def _render_detail(
    request: HttpRequest, version: ModelVersion, form: ReanalysisForm, *, status: int = 200
) -> HttpResponse:
    user = signed_in(request)
    found = drift.version_drift(version, access.visible_recordings(user))
    reanalyses = (
        access.visible_batches(user)
        .filter(kind=Batch.Kind.REANALYSIS, model_version=version)
        .select_related("model_version", "created_by")[:20]
    )
    validation = (version.metrics or {}).get("validation") or {}
    others = access.visible_models(user).exclude(pk=version.pk)
    context = {
        "version": version,
        "validation": {key: value for key, value in validation.items() if isinstance(value, int | float)},
        "drift": found,
        "batches": reanalyses,
        "others": others.exclude(status=ModelVersion.Status.REJECTED),
        "can_manage": access.can_manage_models(user),
        "can_govern": access.can_govern_models(user),
        "default_for": access.organisations_for(user).filter(default_model=version),
        "choosable": _choosable(user, version),
        "reanalysis_form": form,
    }
    return render(request, "jobs/models_detail.html", context, status=status)


def _choosable(user: User, version: ModelVersion) -> list[tuple[Organisation, bool]]:
    """The user's organisations (as researcher or admin) that may take this version as their
    default, each with whether it already is; staff choose for others through the API."""
    if version.status != ModelVersion.Status.ACTIVE:
        return []
    own = access.member_organisations(user, access.RESEARCH_ROLES)
    return [
        (organisation, organisation.default_model_id == version.pk)
        for organisation in own
        if access.can_use_model(version, organisation)
    ]


@login_required
def model_compare(request: HttpRequest) -> HttpResponse:
    """The diff of versions `a` and `b`, each named as the API's diff takes them (id, name-version
    or version); the recordings whose label changed are shown a page at a time."""
    user = signed_in(request)
    versions = access.visible_models(user).filter(status__in=COMPARABLE)
    chosen_a, chosen_b = request.GET.get("a", ""), request.GET.get("b", "")
    diff, changes = None, None
    if chosen_a and chosen_b:
        version_a, version_b = _named_version(chosen_a, user), _named_version(chosen_b, user)
        chosen_a, chosen_b = str(version_a.pk), str(version_b.pk)
        scope = comparison.visible_scope(user, request.GET.get("batch") or None)
        diff = comparison.compare_versions(version_a, version_b, scope)
        changes = Paginator(diff.changes, CHANGES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "versions": versions,
        "chosen_a": chosen_a,
        "chosen_b": chosen_b,
        "diff": diff,
        "page": changes,
    }
    return render(request, "jobs/models_compare.html", context)


@login_required
def model_by_name(request: HttpRequest, reference: str) -> HttpResponse:
    """`/models/screening-3.0.0/`: the version's page, found by its name as in the API."""
    return redirect("model-detail", version_id=_named_version(reference, signed_in(request)).pk)


@login_required
@require_POST
def model_make_default(request: HttpRequest, version_id: int) -> HttpResponse:
    return _change(request, version_id, registry.set_default, "is now the default model")


@login_required
@require_POST
def model_retire(request: HttpRequest, version_id: int) -> HttpResponse:
    return _change(request, version_id, registry.retire, "is retired: kept for the record, no longer offered")


@login_required
@require_POST
def model_publish(request: HttpRequest, version_id: int) -> HttpResponse:
    if not access.can_govern_models(signed_in(request)):
        raise PermissionDenied(registry.PUBLISH_REFUSED)
    return _change(request, version_id, registry.publish, "is published: every organisation can use it")


@login_required
@require_POST
def model_organisation_default(request: HttpRequest, version_id: int) -> HttpResponse:
    """Make this version the default of one organisation, or (`clear`) stop that."""
    user = signed_in(request)
    slug = request.POST.get("organisation", "")
    chosen = access.organisations_for(user).filter(slug=slug).first()
    if chosen is None:
        raise Http404("No such organisation")
    if not access.can_choose_models(user, chosen):
        raise PermissionDenied(
            f"Only researchers and administrators of {chosen.name} can choose its default."
        )
    version = _version(version_id, user)
    try:
        if request.POST.get("clear"):
            registry.clear_organisation_default(version, chosen)
            done = f"{chosen.name} no longer uses {version.slug} as its default"
            fallback = defaults.default_for(chosen)
            done += f": new uploads use {fallback.slug}." if fallback else "."
        else:
            registry.set_organisation_default(version, chosen)
            done = f"{version.slug} is now the default model of {chosen.name}."
    except registry.RegistrationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("model-detail", version_id=version.pk)


def _change(
    request: HttpRequest, version_id: int, change: Callable[[ModelVersion], ModelVersion], done: str
) -> HttpResponse:
    user = signed_in(request)
    if not access.can_govern_models(user):
        raise PermissionDenied(registry.GOVERNANCE_REFUSED)
    version = _version(version_id, user)
    try:
        change(version)
    except registry.RegistrationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{version.slug} {done}.")
    return redirect("model-detail", version_id=version.pk)


def _named_version(reference: str, user: User) -> ModelVersion:
    try:
        return model_lookup.resolve_model(reference, statuses=COMPARABLE, among=access.visible_models(user))
    except model_lookup.UnknownModel as exc:
        raise Http404(str(exc)) from exc


def _version(version_id: int | str, user: User) -> ModelVersion:
    versions = access.visible_models(user).select_related("registered_by", "organisation")
    try:
        return versions.get(pk=int(version_id))
    except (ModelVersion.DoesNotExist, ValueError) as exc:
        raise Http404("No such model version") from exc


urlpatterns = [
    path("", model_list, name="model-list"),
    path("compare", model_compare, name="model-compare"),
    path("<int:version_id>/", model_detail, name="model-detail"),
    path("<int:version_id>/default", model_make_default, name="model-make-default"),
    path("<int:version_id>/retire", model_retire, name="model-retire"),
    path("<int:version_id>/publish", model_publish, name="model-publish"),
    path(
        "<int:version_id>/organisation-default",
        model_organisation_default,
        name="model-organisation-default",
    ),
    path("<int:version_id>/reanalyse", model_reanalyse, name="model-reanalyse"),
    path("<str:reference>/", model_by_name, name="model-by-name"),
]
