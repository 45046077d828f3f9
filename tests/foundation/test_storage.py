import io
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


def test_it_signs_short_lived_links_on_s3() -> None:
    import urllib.request

    storage.put_bytes("tests/signed.txt", b"signed content")
    url = storage.signed_url("tests/signed.txt", filename="signed.txt", content_type="text/plain", seconds=60)

    assert url is not None and "X-Amz-Expires=60" in url
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
