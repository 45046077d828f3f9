"""The upload page sends a large file in parts and carries on after the network drops."""

import io
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from jobs import storage
from jobs.models import Batch, ResumableUpload
from tests.pipeline.test_resumable_uploads import MIB, PART, archive_of, hold_ingest
from tests.web.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THROTTLED = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1_500_000}
OFFLINE = {**THROTTLED, "offline": True}
UNTHROTTLED = {**THROTTLED, "uploadThroughput": -1}
PART_NUMBER = re.compile(r"partNumber=(\d+)|/parts/(\d+)/")


@pytest.fixture(params=["s3", "filesystem"])
def parts_go_to(request: pytest.FixtureRequest, live_server: Any, settings: Any) -> str:
    """Parts straight to the S3-API server (its bucket's CORS rule set by `prepare_storage`
    for the app's origin, as a deployment does), or through the app on filesystem storage."""
    if request.param == "filesystem":
        request.getfixturevalue("filesystem_storage")
        return "app"
    settings.LUBDUB_STORAGE_CORS_ORIGINS = [live_server.url]
    call_command("prepare_storage", stdout=io.StringIO())
    request.addfinalizer(lambda: storage._s3_client().delete_bucket_cors(Bucket=storage._bucket()))
    return "storage"


def _part(url: str) -> int | None:
    found = PART_NUMBER.search(url)
    return int(found[1] or found[2]) if found else None


def test_it_uploads_a_large_file_in_parts_through_a_network_blip(
    live_server: Any,
    page: Any,
    member: Any,
    screening_model_version: Any,
    parts_go_to: str,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.LUBDUB_UPLOAD_PART_BYTES = PART
    queued = hold_ingest(monkeypatch)
    archive = tmp_path / "night ward.zip"
    archive.write_bytes(archive_of(16 * MIB))  # parts of 5, 5, 5 and 1 MiB
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    stored: list[int] = []  # parts the receiver answered 200 to
    failed: list[int] = []  # part requests the drop cut off
    page.on("response", lambda r: r.request.method == "PUT" and r.ok and stored.append(_part(r.url)))
    page.on("requestfailed", lambda request: request.method == "PUT" and failed.append(_part(request.url)))
    log_in(page, live_server.url, member.username)
    page.get_by_role("link", name="Upload", exact=True).click()
    page.evaluate("document.querySelector('form[data-upload]').dataset.resumableAbove = String(1024 * 1024)")
    page.get_by_label("Recording or zip archive").set_input_files(str(archive))
    page.get_by_label("Batch name").fill("In parts")
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send("Network.emulateNetworkConditions", THROTTLED)

    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_function(
        """(() => document.querySelector('[data-upload-text]').textContent.startsWith('Uploading')
              && +document.querySelector('[data-upload-progress]').getAttribute('aria-valuenow') > 20)()""",
        timeout=60_000,
    )
    network.send("Network.emulateNetworkConditions", OFFLINE)
    time.sleep(3)
    stored_while_offline = len(stored)
    network.send("Network.emulateNetworkConditions", UNTHROTTLED)
    page.wait_for_url("**/batches/*/", timeout=120_000)

    batch = Batch.objects.get()
    upload = ResumableUpload.objects.get()
    assert (upload.status, bool(upload.multipart_id)) == ("completed", parts_go_to == "storage")
    assert (batch.name, batch.upload_name) == ("In parts", "night ward.zip")
    assert storage.read_bytes(batch.upload_key) == archive.read_bytes()
    assert queued == [str(batch.pk)]
    assert stored_while_offline < 4  # the drop came while parts were still to be sent
    assert failed, "no part was cut off by the drop"
    assert sorted(stored) == [1, 2, 3, 4]  # each stored once: the cut ones sent again, no other
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('lubdub-upload:'))") == []
    assert page_errors == []
