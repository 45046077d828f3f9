"""Resumable uploads: parts straight to the S3-API server or through the app, checked, made a batch."""

import datetime
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Batch, ResumableUpload
from jobs.services import queue, resumable
from tests.conftest import SAMPLES
from tests.factories import MembershipFactory
from tests.pipeline.conftest import LABELS, wait_for_batch
from workers import tasks

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part but the last
NAMES = ["a0033.wav", "a0071.wav", "d0001.wav"]


@pytest.fixture(autouse=True)
def _small_parts(settings: Any) -> None:
    settings.LUBDUB_UPLOAD_PART_BYTES = PART


def archive_of(size: int) -> bytes:
    """A stored zip of real recordings and their labels, padded to about `size` bytes.

    The padding is random (it must not compress) and under __MACOSX/, which ingest
    rejects as a member of its own while the recordings go on.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in NAMES:
            archive.write(SAMPLES / name, f"ward/{name}")
        archive.writestr("labels.csv", "path,label\n" + "".join(f"ward/{n},{LABELS[n]}\n" for n in NAMES))
        archive.writestr("__MACOSX/padding", os.urandom(max(0, size - buffer.tell() - 400)))
    return buffer.getvalue()


def open_upload(api: APIClient, data: bytes, *, sha256: str = "", **fields: Any) -> Any:
    body = {"filename": "ward.zip", "size": len(data), "sha256": sha256 or hashlib.sha256(data).hexdigest()}
    response = api.post("/api/v1/uploads/", {**body, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def hold_ingest(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the batches whose ingest is queued instead of sending it: a worker (the session's
    shared one may be running) that ingested one would delete the upload object the test reads."""
    queued: list[str] = []
    monkeypatch.setattr(queue, "send_ingest", lambda batch: queued.append(str(batch.pk)))
    return queued


def md5(data: bytes) -> str:
    """A part's etag: S3's, and the app's on filesystem storage."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def part_of(data: bytes, number: int, part_size: int = PART) -> bytes:
    return data[(number - 1) * part_size : number * part_size]


def send_part(api: APIClient, state: Any, number: int, body: bytes) -> str:
    """PUT a part where the upload says, as a client does; returns the etag answered."""
    url = state["part_urls"][str(number)]
    if state["transport"] == "storage":
        answer = requests.put(url, data=body, timeout=30)  # presigned: no credentials
        assert answer.status_code == 200, answer.text
        return answer.headers["ETag"].strip('"')
    answer = api.put(url, body, content_type="application/octet-stream")
    assert answer.status_code == 200, answer.content
    return str(answer.json()["etag"])


def state_of(api: APIClient, upload: Any) -> Any:
    response = api.get(f"/api/v1/uploads/{upload['id']}/")
    assert response.status_code == 200, response.content
    return response.json()


def complete(api: APIClient, upload: Any) -> Any:
    return api.post(f"/api/v1/uploads/{upload['id']}/complete/")


@pytest.fixture(params=["s3", "filesystem"])
def either_storage(request: pytest.FixtureRequest) -> str:
    """Each test twice: on the S3-API server (the test default) and on filesystem storage."""
    if request.param == "filesystem":
        request.getfixturevalue("filesystem_storage")
    return str(request.param)


def test_it_sends_parts_where_the_storage_wants_them_and_makes_the_batch(
    api: Any, default_model: Any, either_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = hold_ingest(monkeypatch)
    data = archive_of(11 * MIB)

    upload = open_upload(api, data, name="ward round")
    for number in upload["missing"]:
        send_part(api, upload, number, part_of(data, number))
    listed = state_of(api, upload)
    answer = complete(api, upload)

    assert upload["transport"] == ("storage" if either_storage == "s3" else "app")
    assert (upload["part_count"], upload["missing"]) == (3, [1, 2, 3])
    if either_storage == "s3":  # presigned links to the S3-API server, not to the app
        assert all(url.startswith(os.environ["S3_ENDPOINT_URL"]) for url in upload["part_urls"].values())
    else:
        assert upload["part_urls"]["2"] == f"http://testserver/api/v1/uploads/{upload['id']}/parts/2/"
    assert listed["missing"] == [] and sorted(listed["part_urls"]) == ["1", "2", "3"]
    assert [(p["number"], p["size"], p["etag"]) for p in listed["parts"]] == [
        (n, len(part_of(data, n)), md5(part_of(data, n))) for n in (1, 2, 3)
    ]
    assert answer.status_code == 201, answer.content
    batch = Batch.objects.get(pk=answer.json()["id"])
    assert (batch.name, batch.upload_name, batch.upload_size) == ("ward round", "ward.zip", len(data))
    assert batch.priority == Batch.Priority.BULK
    assert storage.read_bytes(batch.upload_key) == data
    assert queued == [str(batch.pk)]  # its ingest, as for an upload
    assert ResumableUpload.objects.get(pk=upload["id"]).status == ResumableUpload.Status.COMPLETED
    assert state_of(api, upload)["batch"] == str(batch.pk)
    # Completing again answers the same batch.
    again = complete(api, upload)
    assert (again.status_code, again.json()["id"]) == (200, str(batch.pk))
    if either_storage == "filesystem":
        assert not Path(storage.default_storage.path(storage.parts_folder(upload["id"]))).exists()


@pytest.mark.slow
def test_it_makes_a_batch_that_is_analysed_as_an_upload_is(
    api: Any, default_model: Any, shared_worker: Any
) -> None:
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    for number in upload["missing"]:
        send_part(api, upload, number, part_of(data, number))

    batch = wait_for_batch(complete(api, upload).json()["id"])

    assert (batch.status, batch.total_count, batch.done_count, batch.rejected_count) == (
        "completed_with_errors",
        4,
        3,
        1,
    )
    assert sorted(batch.recordings.exclude(label="").values_list("path", flat=True)) == [
        f"ward/{name}" for name in NAMES
    ]


def test_it_refuses_a_checksum_mismatch_and_keeps_the_parts_to_send_again(
    api: Any, default_model: Any, either_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_ingest(monkeypatch)
    data = archive_of(11 * MIB)
    upload = open_upload(api, data)
    garbled = bytearray(part_of(data, 2))
    garbled[1000] ^= 0xFF
    for number in (1, 3):
        send_part(api, upload, number, part_of(data, number))
    send_part(api, upload, 2, bytes(garbled))

    refused = complete(api, upload)
    kept = state_of(api, upload)
    differing = [p["number"] for p in kept["parts"] if p["etag"] != md5(part_of(data, p["number"]))]
    for number in differing:
        send_part(api, kept, number, part_of(data, number))
    accepted = complete(api, upload)

    assert refused.status_code == 422
    assert refused.json()["code"] == "checksum_mismatch"
    assert "SHA-256" in refused.json()["detail"]
    assert (kept["status"], kept["error_code"], kept["missing"]) == ("open", "checksum_mismatch", [])
    assert [p["number"] for p in kept["parts"]] == [1, 2, 3]
    assert sorted(kept["part_urls"]) == ["1", "2", "3"]
    assert differing == [2]
    assert accepted.status_code == 201, accepted.content
    assert storage.read_bytes(Batch.objects.get().upload_key) == data


def test_it_refuses_to_complete_with_a_part_missing_or_short(api: Any, default_model: Any) -> None:
    data = archive_of(11 * MIB)
    upload = open_upload(api, data)
    send_part(api, upload, 1, part_of(data, 1)[:-1])
    send_part(api, upload, 3, part_of(data, 3))

    refused = complete(api, upload)

    assert refused.status_code == 409
    assert refused.json()["code"] == "parts_missing"
    assert state_of(api, upload)["missing"] == [1, 2]
    assert not Batch.objects.exists()


def test_it_refuses_an_upload_over_the_limit_and_unknown_options_when_it_opens(
    api: Any, default_model: Any, settings: Any
) -> None:
    settings.LUBDUB_MAX_UPLOAD_BYTES = 10 * MIB
    body = {"filename": "big.zip", "sha256": "0" * 64}

    too_large = api.post("/api/v1/uploads/", {**body, "size": 10 * MIB + 1}, format="json")
    unknown_model = api.post("/api/v1/uploads/", {**body, "size": 1, "model": "nope-9"}, format="json")
    bad_sum = api.post("/api/v1/uploads/", {**body, "size": 1, "sha256": "xyz"}, format="json")

    assert (too_large.status_code, too_large.json()["code"]) == (413, "too_large")
    assert (unknown_model.status_code, unknown_model.json()["code"]) == (400, "unknown_model")
    assert (bad_sum.status_code, bad_sum.json()["code"]) == (400, "invalid")
    assert not ResumableUpload.objects.exists()


def test_it_answers_an_idempotent_retry_of_an_open_with_the_same_upload(api: Any, default_model: Any) -> None:
    body = {"filename": "ward.zip", "size": 100, "sha256": "a" * 64}

    first = api.post("/api/v1/uploads/", body, format="json", HTTP_IDEMPOTENCY_KEY="open-1")
    again = api.post("/api/v1/uploads/", body, format="json", HTTP_IDEMPOTENCY_KEY="open-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert ResumableUpload.objects.count() == 1


def test_it_answers_404_for_another_users_upload(api: Any, default_model: Any, member: Any) -> None:
    upload = open_upload(api, b"PK\x03\x04" + b"x" * 100)
    colleague = MembershipFactory(organisation=member.membership_set.get().organisation).user
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=colleague).key}")
    base = f"/api/v1/uploads/{upload['id']}/"

    answers = [
        other.get(base),
        other.put(f"{base}parts/1/", b"x" * 104, content_type="application/octet-stream"),
        other.post(f"{base}complete/"),
        other.delete(base),
    ]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "not_found")] * 4
    assert ResumableUpload.objects.get(pk=upload["id"]).status == ResumableUpload.Status.OPEN


def test_it_takes_parts_through_the_app_only_on_filesystem_storage(
    api: Any, default_model: Any, filesystem_storage: Path
) -> None:
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    url = f"/api/v1/uploads/{upload['id']}/parts/"

    wrong_size = api.put(f"{url}1/", b"x" * 10, content_type="application/octet-stream")
    wrong_number = api.put(f"{url}3/", b"x" * 10, content_type="application/octet-stream")
    first = api.put(f"{url}1/", part_of(data, 1), content_type="application/octet-stream")
    again = api.put(f"{url}1/", part_of(data, 1), content_type="application/octet-stream")
    files = sorted(p.name for p in (filesystem_storage / "resumable" / upload["id"]).iterdir())

    assert (wrong_size.status_code, wrong_size.json()["code"]) == (400, "bad_part_size")
    assert (wrong_number.status_code, wrong_number.json()["code"]) == (400, "bad_part_number")
    assert first.json() == {"number": 1, "size": PART, "etag": md5(part_of(data, 1))}
    assert again.status_code == 200
    assert files == [f"00001.{first.json()['etag']}"]  # sent twice, stored once
    assert state_of(api, upload)["missing"] == [2]


def test_it_refuses_parts_through_the_app_on_s3_storage(api: Any, default_model: Any) -> None:
    upload = open_upload(api, b"PK\x03\x04" + b"x" * 100)

    answer = api.put(
        f"/api/v1/uploads/{upload['id']}/parts/1/",
        b"PK\x03\x04" + b"x" * 100,
        content_type="application/octet-stream",
    )

    assert (answer.status_code, answer.json()["code"]) == (409, "parts_go_to_storage")


def _s3_uploads_in_progress() -> set[str]:
    client, bucket = storage._s3_client(), storage._bucket()
    return {entry["UploadId"] for entry in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_it_aborts_expired_uploads_and_deletes_their_parts(api: Any, default_model: Any) -> None:
    from config.celery_app import app

    data = archive_of(6 * MIB)
    on_s3 = open_upload(api, data)
    send_part(api, on_s3, 1, part_of(data, 1))
    fresh = open_upload(api, data)
    row = ResumableUpload.objects.get(pk=on_s3["id"])
    ResumableUpload.objects.filter(pk=row.pk).update(
        expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    )
    assert row.multipart_id in _s3_uploads_in_progress()

    cleaned = tasks.expire_uploads()
    again = tasks.expire_uploads()

    row.refresh_from_db()
    assert (cleaned, again) == (1, 0)
    assert (row.status, row.cleaned_at is not None) == (ResumableUpload.Status.EXPIRED, True)
    assert row.multipart_id not in _s3_uploads_in_progress()
    assert ResumableUpload.objects.get(pk=fresh["id"]).multipart_id in _s3_uploads_in_progress()
    assert state_of(api, on_s3)["status"] == "expired"
    gone = complete(api, on_s3)
    assert (gone.status_code, gone.json()["code"]) == (410, "upload_expired")
    entry = app.conf.beat_schedule["expire-uploads"]
    assert (entry["task"], entry["schedule"]) == (tasks.expire_uploads.name, 3600.0)


def test_it_deletes_the_parts_of_expired_uploads_on_filesystem_storage(
    api: Any, default_model: Any, filesystem_storage: Path
) -> None:
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    api.put(
        f"/api/v1/uploads/{upload['id']}/parts/1/", part_of(data, 1), content_type="application/octet-stream"
    )
    folder = filesystem_storage / "resumable" / upload["id"]
    assert len(list(folder.iterdir())) == 1

    resumable.expire_abandoned(now=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2))

    assert not folder.exists()
    assert ResumableUpload.objects.get(pk=upload["id"]).status == ResumableUpload.Status.EXPIRED


def test_it_deletes_the_parts_of_an_upload_the_client_gives_up(api: Any, default_model: Any) -> None:
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    send_part(api, upload, 1, part_of(data, 1))
    row = ResumableUpload.objects.get(pk=upload["id"])

    deleted = api.delete(f"/api/v1/uploads/{upload['id']}/")

    assert deleted.status_code == 204
    assert row.multipart_id not in _s3_uploads_in_progress()
    assert state_of(api, upload)["status"] == "aborted"


def test_it_completes_an_upload_whose_parts_a_dead_request_had_already_joined(
    api: Any, default_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_ingest(monkeypatch)
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    for number in (1, 2):
        send_part(api, upload, number, part_of(data, number))
    row = ResumableUpload.objects.get(pk=upload["id"])
    parts = storage.list_parts(row.storage_key, row.multipart_id, "")
    storage.assemble_parts(row.storage_key, row.multipart_id, "", parts)  # and then the request died

    answer = complete(api, upload)

    assert answer.status_code == 201, answer.content
    assert storage.read_bytes(Batch.objects.get().upload_key) == data


def test_it_completes_when_the_join_timed_out_and_its_retry_found_no_multipart_upload(
    api: Any, default_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_ingest(monkeypatch)
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    for number in (1, 2):
        send_part(api, upload, number, part_of(data, number))
    real_assemble = storage.assemble_parts

    def joined_then_lost_answer(*args: Any) -> None:
        real_assemble(*args)  # the storage joined them, but the answer timed out, and the
        # retry found the multipart upload gone (NoSuchUpload, as storage reports it)
        raise FileNotFoundError("NoSuchUpload")

    monkeypatch.setattr(storage, "assemble_parts", joined_then_lost_answer)

    answer = complete(api, upload)

    assert answer.status_code == 201, answer.content
    assert storage.read_bytes(Batch.objects.get().upload_key) == data


def test_it_never_aborts_an_upload_a_completion_claimed_while_it_was_listed(
    api: Any, default_model: Any
) -> None:
    data = archive_of(6 * MIB)
    upload = open_upload(api, data)
    listed = ResumableUpload.objects.get(pk=upload["id"])  # read as open by a listing...
    ResumableUpload.objects.filter(pk=listed.pk).update(status=ResumableUpload.Status.COMPLETING)
    storage.discard_parts(listed.storage_key, listed.multipart_id, "")  # ...whose parts then went

    with pytest.raises(resumable.UploadRejected) as refused:
        resumable.describe(listed)
    completing = api.get(f"/api/v1/uploads/{upload['id']}/").json()

    assert (refused.value.code, refused.value.status) == ("completing", 409)
    assert ResumableUpload.objects.get(pk=listed.pk).status == ResumableUpload.Status.COMPLETING
    assert (completing["status"], completing["parts"], completing["part_urls"]) == ("completing", [], {})
