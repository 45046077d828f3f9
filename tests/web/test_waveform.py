"""The recording page's interactive waveform: the peaks a worker stores, the endpoint the page
reads, and the canvas in a real browser (zoom, pan, click to seek, heart-sound markers)."""

import base64
import uuid
from typing import Any

import numpy as np
import pytest

from jobs import storage
from jobs.models import Prediction
from jobs.services import waveform
from tests import factories
from tests.conftest import SAMPLES
from tests.web import builders
from tests.web.conftest import log_in, screenshot

SAMPLE = sorted(SAMPLES.glob("*.wav"))[0]
BEAT_S = 0.8


def beats(duration_s: float) -> dict[str, Any]:
    """A segmentation summary with one beat every BEAT_S seconds."""
    starts = np.arange(0.2, duration_s - BEAT_S, BEAT_S)
    runs = []
    for start in starts:
        runs += [
            ["S1", start, start + 0.12],
            ["systole", start + 0.12, start + 0.32],
            ["S2", start + 0.32, start + 0.42],
            ["diastole", start + 0.42, start + BEAT_S],
        ]
    rounded = [[state, round(float(a), 3), round(float(b), 3)] for state, a, b in runs]
    return {
        "s1_s": [round(float(start), 3) for start in starts],
        "s2_s": [round(float(start + 0.32), 3) for start in starts],
        "segments": rounded,
        "cycles": len(starts) - 1,
        "heart_rate_bpm": 75.0,
        "heart_rate_sd_bpm": 0.0,
    }


def quantised(data: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["peaks"]), dtype=np.int8).reshape(-1, 2)


def test_it_keeps_each_bins_minimum_and_maximum() -> None:
    rate = 2000
    samples = np.zeros(rate * 2)
    samples[0:10] = [-0.5, 1.0] * 5  # bin 0 (samples 0-9 at 200 bins/s)
    samples[2000:2010] = [-2.0, 0.0] * 5  # bin 200: the recording's peak
    data = waveform.envelope(samples, sample_rate=rate)
    pairs = quantised(data)
    assert data["bins"] == 400 and data["bins_per_second"] == 200
    assert data["scale"] == 2.0
    assert pairs[0].tolist() == [-32, 64]  # -0.5/2 and 1.0/2 of 127, rounded
    assert pairs[200].tolist() == [-127, 0]
    assert pairs[1].tolist() == [0, 0]


def test_it_caps_the_bins_of_a_long_recording() -> None:
    rate = 1000
    hour = np.sin(np.arange(rate * 3600) / 7.0)
    data = waveform.envelope(hour, sample_rate=rate)
    assert data["bins"] == waveform.MAX_BINS
    assert data["bins_per_second"] == pytest.approx(waveform.MAX_BINS / 3600)
    assert len(base64.b64decode(data["peaks"])) == 2 * waveform.MAX_BINS
    assert quantised(data).min() == -127 and quantised(data).max() == 127


@pytest.mark.django_db
def test_it_serves_the_peaks_with_the_predictions_heart_sounds(
    member_client: Any, member: Any, organisation: Any, outsider: Any, client: Any
) -> None:
    batch = builders.finished_batch(organisation, member, files=[SAMPLE])
    recording = batch.recordings.get()
    Prediction.objects.filter(recording=recording).update(segments=beats(20.0))
    url = f"/recordings/{recording.pk}/waveform?model={batch.model_version_id}"
    key = waveform.peaks_key(recording, waveform.band_of(batch.model_version))
    storage.delete(key)  # drawn by an earlier run: the bucket outlives the test database

    pending = member_client.get(url)
    assert pending.json() == {"ready": False, "failed": ""}
    assert "no-cache" in pending["Cache-Control"]

    assert waveform.render_waveform(recording.pk, batch.model_version_id) == key
    data = member_client.get(url).json()
    assert data["ready"] is True
    assert data["duration_s"] == pytest.approx(33.0, abs=15)  # the sample's real length
    assert len(quantised(data)) == data["bins"] == pytest.approx(data["duration_s"] * 200, abs=1)
    assert data["s1_s"][:2] == [0.2, 1.0]
    assert {state for state, _, _ in data["segments"]} == {"systole", "diastole"}
    assert data["timeline_class"] == "abnormal" and data["threshold"] == 0.5
    assert len(data["timeline"]) == len(recording.predictions.get().timeline)

    client.force_login(outsider)
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_it_says_when_the_audio_cannot_be_drawn(member_client: Any, member: Any, organisation: Any) -> None:
    batch = builders.finished_batch(organisation, member, files=[SAMPLE])
    sha = uuid.uuid4().hex * 2
    broken = factories.RecordingFactory(batch=batch, path="clinic/broken.wav", sha256=sha)
    storage.put_bytes(broken.storage_key, b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    waveform.render_waveform(broken.pk, batch.model_version_id)
    data = member_client.get(f"/recordings/{broken.pk}/waveform?model={batch.model_version_id}").json()
    assert data["ready"] is False
    assert data["failed"].startswith("The recording cannot be drawn")


def visible(onsets: list[float], view: dict[str, float]) -> int:
    return sum(view["start"] <= onset <= view["end"] for onset in onsets)


def view_of(page: Any) -> dict[str, float]:
    box = page.locator("[data-waveform-url]")
    return {
        "start": float(box.get_attribute("data-view-start")),
        "end": float(box.get_attribute("data-view-end")),
        "markers": int(box.get_attribute("data-markers-drawn")),
        "segments": int(box.get_attribute("data-segments-drawn")),
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_zooms_pans_and_seeks_the_audio_in_a_browser(
    live_server: Any, page: Any, member: Any, organisation: Any, celery_worker: Any
) -> None:
    batch = builders.finished_batch(organisation, member, files=[SAMPLE])
    recording = batch.recordings.get()
    segments = beats(30.0)
    Prediction.objects.filter(recording=recording).update(segments=segments)
    onsets = segments["s1_s"] + segments["s2_s"]

    log_in(page, live_server.url, member.username)
    page.goto(f"{live_server.url}/recordings/{recording.pk}/")
    # A worker stores the peaks and the playable copy on the first visit; the page swaps them in.
    page.wait_for_selector("[data-waveform-url][data-ready=true]", timeout=60_000)
    assert page.locator("[data-overview-figure]").is_hidden()
    whole = view_of(page)
    assert whole["start"] == 0 and whole["end"] > 20
    assert whole["markers"] == visible(onsets, whole) > 40
    assert whole["segments"] > 40

    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Zoom in").click()
    zoomed = view_of(page)
    assert zoomed["end"] - zoomed["start"] == pytest.approx((whole["end"] - whole["start"]) / 4, abs=0.01)
    assert zoomed["markers"] == visible(onsets, zoomed) < whole["markers"]

    page.get_by_role("button", name="Later").click()
    panned = view_of(page)
    span = zoomed["end"] - zoomed["start"]
    assert panned["start"] == pytest.approx(zoomed["start"] + span / 2, abs=0.01)
    assert panned["markers"] == visible(onsets, panned)

    page.wait_for_function("document.querySelector('audio') && document.querySelector('audio').duration > 20")
    canvas = page.locator("[data-waveform-canvas]")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + 40)
    wanted = panned["start"] + 0.75 * span
    page.wait_for_function(
        f"Math.abs(document.querySelector('audio').currentTime - {wanted}) < {span * 0.02}"
    )
    assert float(page.locator("[data-waveform-url]").get_attribute("data-cursor")) == pytest.approx(
        wanted, abs=span * 0.02
    )
    # Dragging pans instead of seeking.
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + 40, steps=5)
    page.mouse.up()
    dragged = view_of(page)
    assert dragged["start"] == pytest.approx(panned["start"] + 0.25 * span, abs=0.05)
    assert page.evaluate("document.querySelector('audio').currentTime") == pytest.approx(
        wanted, abs=span * 0.02
    )
    screenshot(page, "16-waveform-zoomed")

    page.get_by_role("button", name="Whole recording").click()
    assert view_of(page)["start"] == 0 and view_of(page)["end"] == whole["end"]
