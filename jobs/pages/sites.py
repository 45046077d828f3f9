"""Site pages: the organisation's sites, one site's calibration evidence, and the forms to add them."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import SiteCalibrationForm, SiteForm
from jobs.models import ModelVersion, Site, SiteCalibration
from jobs.pages.auth import signed_in
from jobs.pages.organisations import current_organisation
from jobs.services import access, defaults, sites
from ml import plots


@dataclass(frozen=True)
class Evidence:
    """An active calibration as the site page shows it."""

    profile: SiteCalibration
    classes: list[str]
    rows: list[tuple[str, list[tuple[int, bool]]]]  # (true class, [(count, on the diagonal)])
    stale_for: ModelVersion | None  # the default model, when it is not the calibrated one


def _evidence(profile: SiteCalibration, default: ModelVersion | None) -> Evidence:
    matrix = profile.confusion_matrix or {}
    classes = list(matrix.get("classes", []))
    counts = matrix.get("rows_truth_columns_predicted", [])
    rows = [
        (name, [(int(count), column == index) for column, count in enumerate(counts[index])])
        for index, name in enumerate(classes)
    ]
    stale = default if default is not None and default.pk != profile.model_version_id else None
    return Evidence(profile=profile, classes=classes, rows=rows, stale_for=stale)


@login_required
def site_list(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    organisation = current_organisation(request)
    if organisation is None:
        raise PermissionDenied("not a member of any organisation")
    can_manage = access.can_calibrate(user, organisation)
    form = SiteForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only researchers and administrators can add sites.")
        if form.is_valid():
            try:
                site = sites.create_site(user, organisation, **form.cleaned_data)
            except sites.SiteRefused as exc:
                form.add_error("name", exc.message)
            else:
                messages.success(
                    request, f"Site “{site.name}” added. Fit its calibration on a labelled batch."
                )
                return redirect("site-detail", site_id=site.pk)
        status = 400
    listed = organisation.sites.order_by("name")
    active = SiteCalibration.objects.filter(site__in=listed, is_active=True).select_related("model_version")
    by_site: dict[int, list[SiteCalibration]] = {}
    for profile in active:
        by_site.setdefault(profile.site_id, []).append(profile)
    context = {
        "organisation": organisation,
        "rows": [(site, by_site.get(site.pk, [])) for site in listed],
        "form": form,
        "can_manage": can_manage,
    }
    return render(request, "jobs/site_list.html", context, status=status)


@login_required
def site_detail(request: HttpRequest, site_id: int) -> HttpResponse:
    site = access.get_site(signed_in(request), site_id)
    return _render_detail(request, site, SiteCalibrationForm(site=site))


@login_required
@require_POST
def site_calibrate(request: HttpRequest, site_id: int) -> HttpResponse:
    user = signed_in(request)
    site = access.get_site(user, site_id)
    if not access.can_calibrate(user, site.organisation):
        raise PermissionDenied("Only researchers and administrators can calibrate a site.")
    form = SiteCalibrationForm(request.POST, site=site)
    if not form.is_valid():
        return _render_detail(request, site, form, status=400)
    data = form.cleaned_data
    try:
        profile = sites.fit_site_calibration(
            data["batch"], site, target=data["target"], min_sensitivity=data["value"], user=user
        )
    except sites.SiteRefused as exc:
        form.add_error(None, exc.message)
        return _render_detail(request, site, form, status=exc.status)
    messages.success(
        request,
        f"Calibration v{profile.version} for {profile.model_version.slug} is active: "
        f"new batches of {site.name} are decided with threshold {profile.threshold:.3f}.",
    )
    return redirect("site-detail", site_id=site.pk)


@login_required
def site_roc(request: HttpRequest, site_id: int, calibration_id: int) -> HttpResponse:
    site = access.get_site(signed_in(request), site_id)
    profile = site.calibrations.select_related("model_version").filter(pk=calibration_id).first()
    if profile is None:
        raise Http404("No such calibration")
    image = plots.draw_roc(
        profile.roc_points,
        chosen=(1 - profile.specificity, profile.sensitivity),
        title=f"{site.name} v{profile.version} · {profile.model_version.slug}",
    )
    response = HttpResponse(image, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _render_detail(
    request: HttpRequest, site: Site, form: SiteCalibrationForm, *, status: int = 200
) -> HttpResponse:
    # The version the site's new batches are read with: the organisation's default.
    default = defaults.default_for(site.organisation)
    history = list(site.calibrations.select_related("model_version", "created_by", "source_batch"))
    context = {
        "site": site,
        "evidence": [_evidence(profile, default) for profile in history if profile.is_active],
        "history": history,
        "default_model": default,
        "uncalibrated_default": default is not None
        and not any(p.is_active and p.model_version_id == default.pk for p in history),
        "form": form,
        "can_manage": access.can_calibrate(signed_in(request), site.organisation),
    }
    return render(request, "jobs/site_detail.html", context, status=status)
