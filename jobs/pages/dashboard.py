"""The dashboard: recent batches of the current organisation, queues and workers."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from jobs import monitoring
from jobs.models import Batch
from jobs.pages.auth import signed_in
from jobs.pages.organisations import current_organisation
from jobs.services import access

RECENT_BATCHES = 8


@login_required
def home(request: HttpRequest) -> HttpResponse:
    organisation = current_organisation(request)
    batches = access.visible_batches(signed_in(request)).filter(organisation=organisation)
    running = batches.exclude(status__in=Batch.FINISHED)
    context = {
        "organisation": organisation,
        "recent_batches": batches.select_related("model_version")[:RECENT_BATCHES],
        "running_count": running.count(),
        "batch_count": batches.count(),
    }
    return render(request, "jobs/dashboard.html", context)


@never_cache
@login_required
def queue_status(request: HttpRequest) -> HttpResponse:
    """A fragment the dashboard refreshes: queue depth and worker status."""
    return render(request, "jobs/_queue_status.html", {"status": monitoring.queue_status()})
