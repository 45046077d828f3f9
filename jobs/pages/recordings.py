"""The recording page: audio, plots, class probabilities, quality, every prediction and
the clinicians' reviews, with the previous and next recording of the batch."""

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from jobs import storage
from jobs.forms import RecordingFilterForm, ReviewForm
from jobs.models import Batch, ModelVersion, Prediction, Recording
from jobs.pages.auth import signed_in
from jobs.services import access, plots, results, reviews, verdicts, waveform

PLOT_NAMES = ("overview", "spectrogram")
PLOT_CACHE_SECONDS = 3600
# The peaks never change and a prediction is never rewritten; a short lifetime
# still lets a re-drawn format reach open pages.
WAVEFORM_CACHE_SECONDS = 600


def _context_batch(request: HttpRequest, recording: Recording) -> Batch:
    """The batch the reader came from (re-analyses point at older recordings)."""
    batch_id = request.GET.get("batch")
    if batch_id:
        try:
            return access.get_batch(signed_in(request), batch_id)
        except (Http404, ValidationError):  # not the reader's batch, or not a batch id
            pass
    return recording.batch


def _chosen_prediction(
    request: HttpRequest, predictions: list[Prediction], batch: Batch
) -> Prediction | None:
    wanted = request.GET.get("model") or str(batch.model_version_id)
    for prediction in predictions:
        if str(prediction.model_version_id) == wanted:
            return prediction
    return predictions[-1] if predictions else None


@dataclass(frozen=True)
class HeartRate:
    """The heart rate shown (none for a recording to re-record), its plausibility flag, and its
    beat-to-beat spread when the cycles were segmented."""

    bpm: float | None
    flag: str = ""
    note: str = ""
    sd_bpm: float | None = None
    cycles: int | None = None


def _heart_rate(prediction: Prediction | None, verdict: verdicts.Verdict | None) -> HeartRate:
    if prediction is None or verdict is None:
        return HeartRate(bpm=None)
    shown = verdict.heart_rate
    segments = prediction.segments or {}  # empty for predictions made before segmentation
    return HeartRate(
        bpm=shown.bpm,
        flag=shown.flag,
        note=shown.note,
        sd_bpm=segments.get("heart_rate_sd_bpm"),
        cycles=segments.get("cycles"),
    )


def _probabilities(prediction: Prediction | None) -> list[tuple[str, float]]:
    if prediction is None:
        return []
    order = list(prediction.model_version.classes) or sorted(prediction.probabilities)
    names = [name for name in order if name in prediction.probabilities]
    return [(name, float(prediction.probabilities[name])) for name in names]


@login_required
def recording_detail(request: HttpRequest, recording_id: int) -> HttpResponse:
    recording = access.get_recording(signed_in(request), recording_id)
    return _render_detail(request, recording)


def _render_detail(
    request: HttpRequest, recording: Recording, *, review_form: ReviewForm | None = None, status: int = 200
) -> HttpResponse:
    batch = _context_batch(request, recording)
    predictions = list(
        recording.predictions.select_related("model_version", "batch", "site_calibration__site").order_by(
            "created_at", "id"
        )
    )
    prediction = _chosen_prediction(request, predictions, batch)
    verdict = verdicts.for_prediction(prediction) if prediction else None
    model_version = prediction.model_version if prediction else batch.model_version
    state = plots.plot_state(recording, model_version)
    analysis = recording.analyses.filter(batch=batch).first()
    query = f"?model={model_version.pk}"
    context = {
        "recording": recording,
        "batch": batch,
        "predictions": predictions,
        "prediction": prediction,
        "verdict": verdict,
        "model_version": model_version,
        "probabilities": _probabilities(prediction),
        "reasons": [str(reason) for reason in prediction.quality_reasons or []] if prediction else [],
        "decision_reasons": [str(reason) for reason in prediction.decision_reasons or []]
        if prediction
        else [],
        "heart": _heart_rate(prediction, verdict),
        "analysis": analysis,
        "problem": recording.error_message or (analysis.error_message if analysis else ""),
        "plots": state,
        "plot_urls": {
            name: reverse("recording-plot", args=[recording.pk, name]) + query for name in PLOT_NAMES
        },
        "plots_status_url": reverse("recording-plots", args=[recording.pk]) + query,
        "waveform_url": reverse("recording-waveform", args=[recording.pk]) + query,
        "audio_url": reverse("recording-audio", args=[recording.pk]),
        **_review_context(request, recording, batch, review_form),
    }
    return render(request, "jobs/recording_detail.html", context, status=status)


def _filter_form(request: HttpRequest, batch: Batch) -> RecordingFilterForm:
    """The batch page's filter and sort the reader came with (they travel in the query)."""
    positive = verdicts.model_rule(batch.model_version).positive
    return RecordingFilterForm(request.GET, classes=list(batch.model_version.classes), positive=positive)


def _navigation(request: HttpRequest, recording: Recording, batch: Batch) -> dict[str, object]:
    """The previous and next recording of the batch, in the batch page's filter and order."""
    form = _filter_form(request, batch)
    rows = results.batch_recordings(batch)
    previous, following = reviews.neighbours(
        rows, form.filter(rows), recording_id=recording.pk, ordering=form.ordering()
    )
    query = urlencode({"batch": batch.pk, **form.query()})
    chosen = form.cleaned_data.get("review") if form.is_valid() else ""
    return {
        "nav_query": query,
        "previous_url": reverse("recording-detail", args=[previous]) + f"?{query}" if previous else "",
        "next_url": reverse("recording-detail", args=[following]) + f"?{query}" if following else "",
        "nav_filter": reviews.REVIEW_FILTERS.get(chosen or "", ""),
        "batch_url": reverse("batch-detail", args=[batch.pk]) + "?" + urlencode(form.query()),
    }


def _review_context(
    request: HttpRequest, recording: Recording, batch: Batch, review_form: ReviewForm | None
) -> dict[str, object]:
    reviewed = reviews.reviewed_prediction(recording, batch)
    may_review = reviewed is not None and reviews.can_review(signed_in(request), recording.organisation_id)
    if may_review and review_form is None and reviewed is not None:
        review_form = _review_form(reviewed)
    history = list(reviews.history(recording))
    return {
        "review": history[0] if history else None,
        "earlier_reviews": history[1:],
        "review_form": review_form if may_review else None,
        "reviewed_prediction": reviewed,
        **_navigation(request, recording, batch),
    }


def _review_form(prediction: Prediction, data: object = None) -> ReviewForm:
    return ReviewForm(
        data, outcome=reviews.outcome_of(prediction), classes=list(prediction.model_version.classes)
    )


@require_POST
@login_required
def recording_review(request: HttpRequest, recording_id: int) -> HttpResponse:
    """Record a review from the recording page; back to it, or on to the next recording."""
    recording = access.get_recording(signed_in(request), recording_id)
    batch = _context_batch(request, recording)
    prediction = reviews.reviewed_prediction(recording, batch)
    if prediction is None:
        raise Http404("Nothing to review: the model has not read this recording")
    form = _review_form(prediction, request.POST)
    if not form.is_valid():
        return _render_detail(request, recording, review_form=form, status=400)
    verdict = form.cleaned_data["verdict"]
    try:
        review = reviews.review_recording(
            signed_in(request),
            recording,
            batch=batch,
            label="" if verdict == reviews.CONFIRM else verdict,
            confirm=verdict == reviews.CONFIRM,
            note=form.cleaned_data["note"],
        )
    except reviews.ReviewRefused as exc:
        form.add_error(None, exc.message)
        return _render_detail(request, recording, review_form=form, status=exc.status)
    messages.success(
        request, f"Reviewed {recording.path}: {review.label} ({review.get_action_display().lower()})."
    )
    navigation = _navigation(request, recording, batch)
    if request.POST.get("then") == "next" and navigation["next_url"]:
        return redirect(str(navigation["next_url"]))
    return redirect(reverse("recording-detail", args=[recording.pk]) + f"?{navigation['nav_query']}")


def _model_version(request: HttpRequest, recording: Recording) -> ModelVersion:
    try:
        return access.visible_models(signed_in(request)).get(pk=int(request.GET.get("model", "")))
    except (ValueError, ModelVersion.DoesNotExist):
        return recording.batch.model_version


@never_cache
@login_required
def recording_plots(request: HttpRequest, recording_id: int) -> JsonResponse:
    """Whether the plots are ready; asks a worker to draw them when they are not."""
    recording = access.get_recording(signed_in(request), recording_id)
    model_version = _model_version(request, recording)
    state = plots.plot_state(recording, model_version)
    query = f"?model={model_version.pk}"
    images = {
        name: reverse("recording-plot", args=[recording.pk, name]) + query
        for name in state.available
        if name in PLOT_NAMES
    }
    audio = reverse("recording-audio", args=[recording.pk]) if "listen" in state.available else None
    return JsonResponse({"ready": state.ready, "failed": state.failed, "images": images, "audio": audio})


@login_required
def recording_waveform(request: HttpRequest, recording_id: int) -> JsonResponse:
    """The interactive waveform's data: peaks per short bin, heart sounds, segments and window
    probabilities; ``{"ready": false}`` while a worker draws the peaks."""
    recording = access.get_recording(signed_in(request), recording_id)
    model_version = _model_version(request, recording)
    state = waveform.waveform_state(recording, model_version)
    if state.peaks is None:
        pending = JsonResponse({"ready": False, "failed": state.failed})
        add_never_cache_headers(pending)
        return pending
    prediction = (
        recording.predictions.filter(model_version=model_version).select_related("model_version").first()
    )
    response = JsonResponse(waveform.page_data(state.peaks, prediction, model_version=model_version))
    patch_cache_control(response, private=True, max_age=WAVEFORM_CACHE_SECONDS)
    return response


@login_required
def recording_plot(request: HttpRequest, recording_id: int, name: str) -> HttpResponse:
    recording = access.get_recording(signed_in(request), recording_id)
    if name not in PLOT_NAMES:
        raise Http404("No such plot")
    try:
        image = plots.read_plot(recording, _model_version(request, recording), name)
    except FileNotFoundError as exc:
        raise Http404("No such plot") from exc
    response = HttpResponse(image, content_type="image/png")
    response["Cache-Control"] = f"private, max-age={PLOT_CACHE_SECONDS}"
    return response


@login_required
def recording_audio(request: HttpRequest, recording_id: int) -> HttpResponseBase:
    """The browser-playable copy a worker made next to the plots."""
    recording = access.get_recording(signed_in(request), recording_id)
    key = plots.listening_key(recording)
    if key is None:
        raise Http404("No playable copy yet")
    filename = f"{recording.path.rsplit('/', 1)[-1]}.wav"
    link = storage.signed_url(key, filename=filename, content_type="audio/wav")
    if link is not None:
        return HttpResponseRedirect(link)
    return FileResponse(storage.open_stream(key), content_type="audio/wav")
