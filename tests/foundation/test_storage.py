import datetime
import hashlib
import hmac
import io
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from django.conf import settings

from jobs import storage


def _exercise_round_trip(key: str) -> None:
    payload = b"lub-dub " * 50_000  # 400 kB: several ranged reads on S3

    assert storage.put(key, io.BytesIO(payload)) == len(payload)
    assert storage.exists(key)
    assert storage.size(key) == len(payload)
    assert storage.read_bytes(key) == payload
    with storage.open_stream(key) as stream:
        stream.seek(len(payload) - 4)
        assert stream.read() == b"dub "
    assert b"".join(storage.iter_chunks(key)) == payload

    storage.put_bytes(key, b"replaced")
    assert storage.read_bytes(key) == b"replaced"

    storage.delete(key)
    assert not storage.exists(key)


def test_it_stores_reads_and_deletes_on_the_s3_api_server() -> None:
    assert settings.USE_S3, "the test environment must point at the S3-API server"
    _exercise_round_trip("tests/s3-round-trip.bin")


def test_it_uploads_a_large_object_in_parts_on_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = storage.SINGLE_PUT_BYTES
    payload = bytes(range(256)) * (parts * 2 // 256) + b"tail"  # two whole parts and a short one
    client = storage._s3_client()
    sent: list[int] = []
    original = client.upload_part
    monkeypatch.setattr(client, "upload_part", lambda **kw: sent.append(len(kw["Body"])) or original(**kw))

    assert storage.put("tests/large.bin", io.BytesIO(payload)) == len(payload)

    assert sent == [parts, parts, 4]  # one part in memory at a time
    assert storage.read_bytes("tests/large.bin") == payload
    storage.delete("tests/large.bin")


def _presigned_signature(url: str, secret: str) -> str:
    """The SigV4 query signature of a presigned GET, computed from the URL and the secret alone."""
    parts = urlsplit(url)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    params = dict(query)
    canonical_query = "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
        for name, value in query
        if name != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]  # date/region/s3/aws4_request
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_it_presigns_s3_links_with_the_secret_for_the_lifetime_asked() -> None:
    # The local S3-API server (moto) checks neither signatures nor expiry: a forged or an
    # expired link works against it. So this checks what the app controls, that the link
    # is signed with the configured key for `seconds` from now, which MinIO and AWS enforce.
    import urllib.request

    options = settings.STORAGES["default"]["OPTIONS"]
    storage.put_bytes("tests/signed.txt", b"signed content")
    url = storage.signed_url("tests/signed.txt", filename="signed.txt", content_type="text/plain", seconds=60)

    assert url is not None
    params = dict(parse_qsl(urlsplit(url).query))
    signed_at = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC
    )
    assert params["X-Amz-Expires"] == "60"
    assert abs((datetime.datetime.now(datetime.UTC) - signed_at).total_seconds()) < 30
    assert params["X-Amz-Credential"].startswith(f"{options['access_key']}/")
    assert params["X-Amz-Signature"] == _presigned_signature(url, options["secret_key"])
    with urllib.request.urlopen(url) as response:  # noqa: S310 - loopback test server
        assert response.read() == b"signed content"


def test_it_stores_reads_and_deletes_on_the_filesystem(filesystem_storage: Path) -> None:
    _exercise_round_trip("tests/fs-round-trip.bin")
    assert filesystem_storage.exists()
    assert storage.signed_url("x", filename="x", content_type="text/plain") is None


def test_it_stores_content_addressed_objects_once(filesystem_storage: Path) -> None:
    key = storage.recording_key("ab" * 32)

    assert storage.put_if_absent(key, io.BytesIO(b"one")) is True
    assert storage.put_if_absent(key, io.BytesIO(b"two")) is False
    assert storage.read_bytes(key) == b"one"


def test_it_names_keys_without_path_tricks() -> None:
    import uuid

    batch_id = uuid.UUID(int=1)
    assert storage.upload_key(batch_id, "../../etc/passwd") == f"uploads/{batch_id}/passwd"
    assert storage.upload_key(batch_id, "clinic <1>.zip") == f"uploads/{batch_id}/clinic_1_.zip"


def test_it_reports_a_missing_object(filesystem_storage: Path) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("tests/missing.bin")


def test_it_configures_bounded_timeouts_and_retries_for_every_storage_call() -> None:
    config = storage._s3_client().meta.config

    assert (config.connect_timeout, config.read_timeout) == (2.0, 10.0)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_it_gives_up_on_a_hung_store_within_the_configured_timeouts(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    storage.put_bytes("tests/hung.txt", b"here")
    settings.LUBDUB_STORAGE_CONNECT_TIMEOUT_S = 0.5
    settings.LUBDUB_STORAGE_READ_TIMEOUT_S = 0.5
    settings.LUBDUB_STORAGE_MAX_ATTEMPTS = 2

    def timed_read() -> float:
        started = time.monotonic()
        with pytest.raises(storage.StorageUnavailable):
            storage.read_bytes("tests/hung.txt")
        return time.monotonic() - started

    os.kill(private_s3.pid, signal.SIGSTOP)
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            # Without timeouts the read would wait a minute per attempt: fail fast instead.
            seconds = pool.submit(timed_read).result(timeout=8)
        finally:
            os.kill(private_s3.pid, signal.SIGCONT)

    assert seconds < 4  # two attempts of 0.5 s, and botocore's backoff between them


def test_it_reads_a_range_of_an_s3_object_with_one_request() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, distinct bytes at every offset mod 256
    storage.put_bytes("tests/ranged.bin", payload)
    sent: list[tuple[str, bytes]] = []
    events = storage._s3_client().meta.events
    events.register(
        "before-send.s3",
        lambda request, **_: sent.append((request.method, request.headers.get("Range"))),
        "count-ranged",
    )
    try:
        middle = storage.read_range("tests/ranged.bin", 300_001, 70_000)
        first = storage.read_range("tests/ranged.bin", 0, 1)
        last = storage.read_range("tests/ranged.bin", len(payload) - 3, 3)
    finally:
        events.unregister("before-send.s3", unique_id="count-ranged")

    assert middle == payload[300_001:370_001]
    assert (first, last) == (payload[:1], payload[-3:])
    assert sent == [("GET", b"bytes=300001-370000"), ("GET", b"bytes=0-0"), ("GET", b"bytes=1048573-1048575")]
    storage.delete("tests/ranged.bin")


@pytest.mark.parametrize(("start", "length"), [(95, 10), (100, 1), (5_000, 20)])
def test_it_reports_a_range_the_s3_object_does_not_hold(start: int, length: int) -> None:
    storage.put_bytes("tests/short.bin", bytes(100))

    with pytest.raises(FileNotFoundError):
        storage.read_range("tests/short.bin", start, length)
    storage.delete("tests/short.bin")


def test_it_reports_a_range_of_a_missing_s3_object() -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_range("tests/never-stored.bin", 0, 10)


def test_it_reads_ranges_on_the_filesystem(filesystem_storage: Path) -> None:
    payload = b"0123456789" * 1000
    storage.put_bytes("tests/fs-ranged.bin", payload)

    assert storage.read_range("tests/fs-ranged.bin", 4321, 1234) == payload[4321:5555]
    assert storage.read_range("tests/fs-ranged.bin", 0, 0) == b""
    with pytest.raises(FileNotFoundError):
        storage.read_range("tests/fs-ranged.bin", 9_995, 10)
    with pytest.raises(FileNotFoundError):
        storage.read_range("tests/fs-missing.bin", 0, 10)


def _exercise_listing(prefix: str) -> None:
    sizes = {f"{prefix}a/{index}.bin": 10 + index for index in range(5)}
    for key, length in sizes.items():
        storage.put_bytes(key, bytes(length))
    storage.put_bytes(f"{prefix.rstrip('/')}-other/x.bin", b"not in the folder")
    try:
        started = datetime.datetime.now(datetime.UTC)
        listed = list(storage.list_objects(prefix, page_size=2))

        assert [(found.key, found.size) for found in listed] == sorted(sizes.items())
        assert all(abs((found.modified - started).total_seconds()) < 60 for found in listed)
        assert list(storage.list_objects(f"{prefix}never/")) == []
        with pytest.raises(ValueError, match="folder"):
            list(storage.list_objects(prefix.rstrip("/")))
    finally:
        for key in [*sizes, f"{prefix.rstrip('/')}-other/x.bin"]:
            storage.delete(key)


def test_it_lists_a_folder_of_s3_objects_a_page_per_request() -> None:
    sent: list[str] = []
    events = storage._s3_client().meta.events
    events.register(
        "before-send.s3",
        lambda request, **_: sent.append(request.method + " " + request.url.split("?", 1)[-1]),
        "count-list",
    )
    try:
        _exercise_listing("tests/listing/")
    finally:
        events.unregister("before-send.s3", unique_id="count-list")

    pages = [request for request in sent if request.startswith("GET list-type=2")]
    assert len(pages) == 3 + 1  # five objects two at a time, and one empty folder


def test_it_lists_a_folder_on_the_filesystem(filesystem_storage: Path) -> None:
    _exercise_listing("tests/listing/")
