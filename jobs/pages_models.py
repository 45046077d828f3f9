"""Model pages: the registry with drift flags, one version's metrics, card and drift, and diffs."""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from jobs.forms import ReanalysisForm
from jobs.models import Batch, ModelVersion
from jobs.services import access, comparison, drift, reanalysis, registry


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    recordings = access.visible_recordings(request.user)
    versions = list(registry.listed_models(include_all=True))
    flagged = {
        version.pk: drift.version_drift(version, recordings).flagged
        for version in versions
        if version.status == ModelVersion.Status.ACTIVE
    }
    rows = [(version, flagged.get(version.pk)) for version in versions]
    return render(
        request, "jobs/models.html", {"rows": rows, "can_manage": registry.can_manage_models(request.user)}
    )


@login_required
def model_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    version = _version(version_id)
    return _render_detail(request, version, ReanalysisForm(version=version))


@login_required
@require_POST
def model_reanalyse(request: HttpRequest, version_id: int) -> HttpResponse:
    """Start (or schedule) a re-analysis of stored recordings with this version."""
    if not registry.can_manage_models(request.user):
        raise PermissionDenied("Only researchers and staff can request a re-analysis.")
    version = _version(version_id)
    form = ReanalysisForm(request.POST, version=version)
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
            request.user,
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
    found = drift.version_drift(version, access.visible_recordings(request.user))
    reanalyses = (
        access.visible_batches(request.user)
        .filter(kind=Batch.Kind.REANALYSIS, model_version=version)
        .select_related("model_version", "created_by")[:20]
    )
    validation = (version.metrics or {}).get("validation") or {}
    context = {
        "version": version,
        "validation": {key: value for key, value in validation.items() if isinstance(value, int | float)},
        "drift": found,
        "batches": reanalyses,
        "others": ModelVersion.objects.exclude(pk=version.pk).exclude(status=ModelVersion.Status.REJECTED),
        "can_manage": registry.can_manage_models(request.user),
        "can_govern": registry.can_govern_models(request.user),
        "reanalysis_form": form,
    }
    return render(request, "jobs/models_detail.html", context, status=status)


@login_required
def model_compare(request: HttpRequest) -> HttpResponse:
    versions = ModelVersion.objects.filter(
        status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED]
    )
    chosen_a, chosen_b = request.GET.get("a", ""), request.GET.get("b", "")
    diff = None
    if chosen_a and chosen_b:
        scope = comparison.visible_scope(request.user, request.GET.get("batch") or None)
        diff = comparison.compare_versions(_version(chosen_a), _version(chosen_b), scope)
    context = {"versions": versions, "chosen_a": chosen_a, "chosen_b": chosen_b, "diff": diff}
    return render(request, "jobs/models_compare.html", context)


@login_required
@require_POST
def model_make_default(request: HttpRequest, version_id: int) -> HttpResponse:
    return _change(request, version_id, registry.set_default, "is now the default model")


@login_required
@require_POST
def model_retire(request: HttpRequest, version_id: int) -> HttpResponse:
    return _change(request, version_id, registry.retire, "is retired: kept for the record, no longer offered")


def _change(
    request: HttpRequest, version_id: int, change: Callable[[ModelVersion], ModelVersion], done: str
) -> HttpResponse:
    if not registry.can_govern_models(request.user):
        raise PermissionDenied(registry.GOVERNANCE_REFUSED)
    version = _version(version_id)
    try:
        change(version)
    except registry.RegistrationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{version.slug} {done}.")
    return redirect("model-detail", version_id=version.pk)


def _version(version_id: int | str) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("registered_by").get(pk=int(version_id))
    except (ModelVersion.DoesNotExist, ValueError) as exc:
        raise Http404("No such model version") from exc


urlpatterns = [
    path("", model_list, name="model-list"),
    path("compare", model_compare, name="model-compare"),
    path("<int:version_id>/", model_detail, name="model-detail"),
    path("<int:version_id>/default", model_make_default, name="model-make-default"),
    path("<int:version_id>/retire", model_retire, name="model-retire"),
    path("<int:version_id>/reanalyse", model_reanalyse, name="model-reanalyse"),
]
