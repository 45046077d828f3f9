"""Every batch, recording, report and audio URL is scoped to the caller's organisations."""

import time
from typing import Any

import pytest
from django.conf import settings
from django.core import signing
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import storage
from jobs.models import Report
from tests.factories import BatchFactory, MembershipFactory, RecordingFactory


@pytest.fixture
def owned(db: None) -> dict[str, Any]:
    membership = MembershipFactory()
    batch = BatchFactory(organisation=membership.organisation, created_by=membership.user)
    recording = RecordingFactory(batch=batch)
    storage.put_bytes(recording.storage_key, b"RIFF....WAVE")
    key = storage.report_key(batch.pk, batch.model_version.slug, "html")
    storage.put_bytes(key, b"<html></html>")
    Report.objects.create(batch=batch, model_version=batch.model_version, format="html", storage_key=key)
    return {"user": membership.user, "batch": batch, "recording": recording}


def _urls(batch: Any, recording: Any) -> list[tuple[str, str]]:
    b, r = batch.pk, recording.pk
    return [
        ("get", f"/api/v1/batches/{b}/"),
        ("get", f"/api/v1/batches/{b}/recordings/"),
        ("get", f"/api/v1/batches/{b}/reports/"),
        ("get", f"/api/v1/batches/{b}/reports/html/"),
        ("post", f"/api/v1/batches/{b}/cancel/"),
        ("delete", f"/api/v1/batches/{b}/"),
        ("get", f"/api/v1/recordings/{r}/"),
        ("get", f"/api/v1/recordings/{r}/audio/"),
    ]


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_it_answers_404_to_another_organisations_member(owned: dict[str, Any]) -> None:
    outsider = _client(MembershipFactory().user)

    answers = {
        url: getattr(outsider, method)(url).status_code
        for method, url in _urls(owned["batch"], owned["recording"])
    }

    assert set(answers.values()) == {404}, answers
    assert outsider.get("/api/v1/batches/").json()["count"] == 0
    owned["batch"].refresh_from_db()  # neither cancelled nor deleted


def test_it_answers_401_without_credentials(owned: dict[str, Any]) -> None:
    anonymous = APIClient()

    answers = {
        url: getattr(anonymous, method)(url).status_code
        for method, url in _urls(owned["batch"], owned["recording"])
    }
    answers["/api/v1/batches/ (list)"] = anonymous.get("/api/v1/batches/").status_code
    answers["/api/v1/batches/ (upload)"] = anonymous.post("/api/v1/batches/").status_code

    assert set(answers.values()) == {401}, answers


def test_it_serves_members_their_batch_and_short_lived_links(owned: dict[str, Any]) -> None:
    member = _client(owned["user"])
    batch, recording = owned["batch"], owned["recording"]

    detail = member.get(f"/api/v1/batches/{batch.pk}/")
    report = member.get(f"/api/v1/batches/{batch.pk}/reports/html/")
    audio = member.get(f"/api/v1/recordings/{recording.pk}/audio/", {"redirect": "0"})

    assert detail.status_code == 200 and detail.json()["id"] == str(batch.pk)
    assert report.status_code == 302
    # The lifetime the app signs; the local S3-API server does not enforce it (see the README),
    # test_storage checks the signature and the filesystem links' expiry is tested below.
    assert "X-Amz-Signature=" in report["Location"] and "X-Amz-Expires=300" in report["Location"]
    assert audio.status_code == 200 and "X-Amz-Signature=" in audio.json()["url"]


def test_it_signs_filesystem_links_and_refuses_tampered_ones(
    owned: dict[str, Any], filesystem_storage: Any
) -> None:
    member = _client(owned["user"])
    recording = owned["recording"]
    storage.put_bytes(recording.storage_key, b"RIFF-audio-bytes")

    link = member.get(f"/api/v1/recordings/{recording.pk}/audio/", {"redirect": "0"}).json()["url"]
    fetched = APIClient().get(link)
    tampered = APIClient().get(link.replace("/files/", "/files/x"))

    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content) == b"RIFF-audio-bytes"
    assert tampered.status_code == 404


def test_it_refuses_a_filesystem_link_older_than_its_lifetime(
    owned: dict[str, Any], filesystem_storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = _client(owned["user"])
    recording = owned["recording"]
    storage.put_bytes(recording.storage_key, b"RIFF-audio-bytes")

    def link_made_ago(seconds: int) -> str:
        # The token carries the time it was signed; back-date that, and the real clock judges it.
        signed_at = int(time.time()) - seconds
        with monkeypatch.context() as patch:
            patch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(signed_at))
            return member.get(f"/api/v1/recordings/{recording.pk}/audio/", {"redirect": "0"}).json()["url"]

    lifetime = settings.SIGNED_URL_SECONDS
    almost_expired = APIClient().get(link_made_ago(lifetime - 10))
    expired = APIClient().get(link_made_ago(lifetime + 10))

    assert almost_expired.status_code == 200
    assert b"".join(almost_expired.streaming_content) == b"RIFF-audio-bytes"
    assert expired.status_code == 404
    assert expired.json() == {"detail": "This link is invalid or has expired.", "code": "not_found"}


def _packed_recording(owned: dict[str, Any]) -> tuple[Any, bytes]:
    """The owned recording moved into the middle of a pack of three."""
    from jobs.services import packs

    pack, audio = packs.Pack(), b"RIFF-the-recording-itself"
    pack.add(b"RIFF-someone-before")
    span = pack.add(audio)
    pack.add(b"RIFF-someone-after")
    pack.write()
    recording = owned["recording"]
    recording.storage_key, recording.storage_offset, recording.size_bytes = span.key, span.offset, span.length
    recording.save()
    return recording, audio


def test_it_serves_only_a_packed_recordings_own_bytes_through_a_signed_app_link(
    owned: dict[str, Any],
) -> None:
    member = _client(owned["user"])
    recording, audio = _packed_recording(owned)

    link = member.get(f"/api/v1/recordings/{recording.pk}/audio/", {"redirect": "0"}).json()["url"]
    fetched = APIClient().get(link)
    tampered = APIClient().get(link.replace("/files/", "/files/x"))

    # Not a presigned link to the pack: that would hand over its other recordings.
    assert "/api/v1/files/" in link and "X-Amz-Signature" not in link
    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content) == audio
    assert tampered.status_code == 404
    storage.delete(recording.storage_key)


def test_it_serves_a_packed_recordings_own_bytes_on_the_filesystem(
    owned: dict[str, Any], filesystem_storage: Any
) -> None:
    member = _client(owned["user"])
    recording, audio = _packed_recording(owned)

    link = member.get(f"/api/v1/recordings/{recording.pk}/audio/", {"redirect": "0"}).json()["url"]

    assert b"".join(APIClient().get(link).streaming_content) == audio


def test_it_counts_a_role_only_on_the_users_own_membership(db: None) -> None:
    from django.contrib.auth.models import AnonymousUser

    from jobs.models import Membership
    from jobs.services import access

    uploader = MembershipFactory(role=Membership.Role.UPLOADER)
    organisation = uploader.organisation
    MembershipFactory(organisation=organisation, role=Membership.Role.ADMIN)  # someone else's role
    researcher = MembershipFactory(role=Membership.Role.RESEARCHER)

    assert list(access.research_organisations(uploader.user)) == []
    assert not access.can_manage_models(uploader.user)
    assert not access.can_calibrate(uploader.user, organisation)
    assert not access.can_administer(uploader.user, organisation)
    assert access.is_member(uploader.user, organisation)
    assert list(access.research_organisations(researcher.user)) == [researcher.organisation]
    assert access.can_manage_models(researcher.user)
    assert not access.is_member(researcher.user, organisation)
    assert not access.can_manage_models(AnonymousUser())
    assert list(access.organisations_for(AnonymousUser())) == []
