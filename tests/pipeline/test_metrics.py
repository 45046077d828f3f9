"""/metrics: refused without its token, and its numbers follow a batch through the pipeline."""

import io
import os
import subprocess
import sys
import threading
import zipfile
from typing import Any

import numpy as np
import pytest
import soundfile
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.metrics import SETTLE, AnalysisSeconds
from jobs.models import Batch, Prediction
from tests.conftest import ROOT, SAMPLES, free_port
from tests.factories import PredictionFactory, RecordingFactory
from tests.pipeline.conftest import upload, wait_for_batch

TOKEN = "metrics-token-for-tests-0123456789"
NAMES = ["a0033.wav", "a0035.wav", "c0002.wav", "e00014.wav"]
QUEUES = {"interactive", "ingest", "analyze", "reports", "default"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _silent_wav(seconds: float = 5.0, rate: int = 2000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return buffer.getvalue()


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in NAMES:
            archive.write(SAMPLES / name, name)
        archive.writestr("notes/readme.txt", "not a recording")  # refused at ingest: not_audio
        archive.writestr("bad/silent.wav", _silent_wav())  # fails in analysis: silent
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_it_refuses_metrics_without_the_token(client: Client, settings: Any) -> None:
    settings.LUBDUB_METRICS_TOKEN = TOKEN

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token-at-all-0000")
    basic = client.get("/metrics", HTTP_AUTHORIZATION="Basic bWV0cmljczptZXRyaWNz")
    bare = client.get("/metrics", HTTP_AUTHORIZATION=TOKEN)

    for refused in (missing, wrong, basic, bare):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"lubdub_" not in refused.content
    assert "LUBDUB_METRICS_TOKEN" in missing.content.decode()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_it_keeps_metrics_off_when_no_token_is_set(client: Client, settings: Any) -> None:
    settings.LUBDUB_METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 404
    assert "Metrics are off: set LUBDUB_METRICS_TOKEN" in response.content.decode()


@pytest.mark.slow
def test_it_shows_the_counters_moving_after_a_batch(
    shared_worker: Any, default_model: Any, api: Any, client: Client, settings: Any
) -> None:
    settings.LUBDUB_METRICS_TOKEN = TOKEN
    model = default_model.slug
    before = scrape(client)

    batch = wait_for_batch(upload(api, _archive(), "metrics.zip")["id"])
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert batch.done_count == len(NAMES)
    assert moved("lubdub_recordings_analysed_total", model=model) == len(NAMES)
    assert moved("lubdub_recording_failures_total", stage="ingest", code="not_audio") == 1
    assert moved("lubdub_recording_failures_total", stage="analysis", code="silent") == 1
    assert moved("lubdub_analysis_seconds_count", model=model) == len(NAMES)
    assert moved("lubdub_analysis_seconds_bucket", model=model, le="+Inf") == len(NAMES)
    assert moved("lubdub_analysis_seconds_sum", model=model) > 0
    assert moved("lubdub_batch_latency_seconds_count", kind="upload") == 1
    assert moved("lubdub_batch_latency_seconds_sum", kind="upload") > 0
    assert moved("lubdub_batches", status=batch.status) == 1
    assert value(after, "lubdub_analyses", status="pending") == 0
    assert (value(after, "lubdub_database_up"), value(after, "lubdub_broker_up")) == (1, 1)
    depths = {dict(labels)["queue"] for name, labels in after if name == "lubdub_queue_depth"}
    assert depths == QUEUES
    # Buckets are cumulative: each bound holds at least the one below it.
    bounds = sorted(
        (float(dict(labels)["le"]), number)
        for (name, labels), number in after.items()
        if name == "lubdub_batch_latency_seconds_bucket" and dict(labels)["kind"] == "upload"
    )
    assert [n for _, n in bounds] == sorted(n for _, n in bounds)
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS


@pytest.mark.django_db(transaction=True)
def test_it_says_the_broker_is_down_and_still_reads_the_database(client: Client, settings: Any) -> None:
    settings.LUBDUB_METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    samples = scrape(client)

    assert (value(samples, "lubdub_broker_up"), value(samples, "lubdub_database_up")) == (0, 1)
    assert not [name for name, _ in samples if name == "lubdub_queue_depth"]
    assert value(samples, "lubdub_batches", status="completed") == 0
    assert ("lubdub_batches", frozenset({("status", "completed")})) in samples


# A web process scraped on its own, so that its database can be somewhere nothing answers.
SCRAPE_ONCE = f"""
import django
django.setup()
from django.test import Client
response = Client().get("/metrics", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer {TOKEN}")
print(response.status_code)
print(response.content.decode())
"""


def test_it_still_shows_queue_depths_when_the_database_is_down() -> None:
    nowhere = f"postgres://lubdub:unused@127.0.0.1:{free_port()}/lubdub"  # nothing listens there
    env = {**os.environ, "DATABASE_URL": nowhere, "LUBDUB_METRICS_TOKEN": TOKEN}

    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE_ONCE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    status, _, text = scraped.stdout.partition("\n")
    assert (scraped.returncode, status) == (0, "200"), scraped.stderr
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert (samples["lubdub_database_up"], samples["lubdub_broker_up"]) == (0, 1)
    depths = [
        family for family in text_string_to_metric_families(text) if family.name == "lubdub_queue_depth"
    ]
    assert {sample.labels["queue"] for sample in depths[0].samples} == QUEUES
    assert "lubdub_batches" not in samples
    assert "metrics: PostgreSQL did not answer" in scraped.stderr


def _counted(histogram: AnalysisSeconds) -> tuple[int, float]:
    tallies = histogram.read().values()
    return sum(tally.count for tally in tallies), sum(tally.total for tally in tallies)


@pytest.mark.django_db(transaction=True)
def test_it_counts_a_prediction_committed_after_a_later_one() -> None:
    timings = {"decode_ms": 2.0, "features_ms": 3.0, "inference_ms": 1.0}  # 6 ms each
    recording = RecordingFactory()
    other = RecordingFactory(batch=recording.batch)
    created, release = threading.Event(), threading.Event()

    def write_slowly() -> None:
        # Takes the lower id, then commits only after a later prediction is visible.
        try:
            with transaction.atomic():
                PredictionFactory(recording=recording, timings=timings)
                created.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    assert created.wait(timeout=30)
    histogram = AnalysisSeconds()
    PredictionFactory(recording=other, timings=timings)
    seen_before_commit = _counted(histogram)
    release.set()
    writer.join()
    after_commit = _counted(histogram)
    Prediction.objects.update(created_at=timezone.now() - SETTLE * 2)
    settled = _counted(histogram)
    Prediction.objects.all().delete()
    after_delete = _counted(histogram)

    assert seen_before_commit[0] == 1
    assert after_commit[0] == settled[0] == after_delete[0] == 2
    # Settled counts stay when their rows are deleted: the histogram is a counter.
    assert settled[1] == after_delete[1] == pytest.approx(0.012)
