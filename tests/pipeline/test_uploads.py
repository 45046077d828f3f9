"""The upload endpoint: streamed to storage, typed, limited, queued by kind."""

import io
from typing import Any

import pytest

from jobs import storage
from jobs.models import Batch
from tests.conftest import SAMPLES
from tests.pipeline.conftest import sample_archive, upload


def _file(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def test_it_answers_413_to_an_upload_over_the_limit(api: Any, default_model: Any, settings: Any) -> None:
    settings.LUBDUB_MAX_UPLOAD_BYTES = 100 * 1024

    response = api.post("/api/v1/batches/", {"file": _file(sample_archive(), "big.zip")}, format="multipart")

    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert not Batch.objects.exists()


def test_it_answers_411_to_a_chunked_upload_instead_of_reading_it_as_empty(
    api: Any, default_model: Any
) -> None:
    # A chunked body has no Content-Length, and Django reads a body by its length.
    response = api.post(
        "/api/v1/batches/",
        {"file": _file(sample_archive(["a0033.wav"]), "one.zip")},
        format="multipart",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
    assert "Content-Length" in response.json()["detail"]
    assert not Batch.objects.exists()


def test_it_answers_415_to_a_file_that_is_neither_audio_nor_zip(api: Any, default_model: Any) -> None:
    response = api.post("/api/v1/batches/", {"file": _file(b"hello, world", "notes.txt")}, format="multipart")

    assert response.status_code == 415
    assert "neither a zip" in response.json()["detail"]


def test_it_stores_an_archive_and_creates_a_bulk_batch(api: Any, default_model: Any) -> None:
    data = sample_archive(["a0033.wav", "a0035.wav"])

    created = upload(api, data, "two.zip", name="two files")

    batch = Batch.objects.get(pk=created["id"])
    assert (batch.priority, batch.name, batch.upload_size) == (Batch.Priority.BULK, "two files", len(data))
    assert storage.read_bytes(batch.upload_key) == data
    assert created["urls"]["recordings"].endswith(f"/api/v1/batches/{batch.pk}/recordings/")


def test_it_sends_a_single_recording_to_the_interactive_queue(api: Any, default_model: Any) -> None:
    created = upload(api, (SAMPLES / "a0033.wav").read_bytes(), "a0033.wav")

    assert Batch.objects.get(pk=created["id"]).priority == Batch.Priority.INTERACTIVE


@pytest.mark.django_db
def test_it_never_imports_tensorflow_in_the_web_process() -> None:
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup();"
        "from django.urls import resolve; import config.urls, jobs.api.views, jobs.services;"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'librosa' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["False", "False", "False"]
