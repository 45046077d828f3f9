"""A batch's recordings grouped by patient, with one verdict per patient."""

from collections import Counter
from urllib.parse import urlencode
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.pages.auth import signed_in
from jobs.services import access, patients, verdicts

PATIENTS_PER_PAGE = 50


@login_required
def batch_patients(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = access.get_batch(signed_in(request), batch_id)
    found = patients.patient_verdicts(batch)
    counts = Counter(patient.verdict for patient in found)
    wanted = request.GET.get("verdict", "")
    named = request.GET.get("patient", "")
    shown = [
        patient
        for patient in found
        if (not wanted or patient.verdict == wanted) and (not named or patient.patient_id == named)
    ]
    page = Paginator(shown, PATIENTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "batch": batch,
        "page": page,
        "patients": page.object_list,
        "patient_total": len(found),
        "verdict_counts": sorted(counts.items(), key=lambda item: (-item[1], item[0])),
        "wanted": wanted,
        "named": named,
        "positive": verdicts.model_rule(batch.model_version).positive,
        "nav_query": urlencode({"batch": batch.pk}),
    }
    return render(request, "jobs/batch_patients.html", context)
