"""`manage.py prepare_storage` sets the bucket's CORS rule for browser uploads.

The upload page PUTs a resumable upload's parts straight to presigned links of
the bucket, which a browser does only when the bucket's CORS rule allows the
page's origin. On an S3-API server of the test's own: the rule is the bucket's.
"""

import http.client
import http.server
import io
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from jobs import storage

ROOT = Path(__file__).resolve().parents[2]
SITE = "https://lubdub.example.org"
LOCAL = "http://127.0.0.1:8000"


def prepare_storage() -> str:
    out = io.StringIO()
    call_command("prepare_storage", stdout=out)
    return out.getvalue()


def browser_upload_rules() -> list[dict[str, Any]]:
    return [rule for rule in storage.bucket_cors_rules() if rule.get("ID") == storage.BROWSER_UPLOAD_RULE_ID]


def preflight(origin: str) -> http.client.HTTPResponse:
    """What a browser asks before it PUTs a part from a page of `origin`."""
    endpoint = urllib.parse.urlsplit(storage._s3_client().meta.endpoint_url)
    connection = http.client.HTTPConnection(endpoint.netloc, timeout=10)
    connection.request(
        "OPTIONS",
        f"/{storage._bucket()}/uploads/some-batch/march.zip?partNumber=1&uploadId=x",
        headers={"Origin": origin, "Access-Control-Request-Method": "PUT"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_it_allows_upload_parts_from_the_sites_origins(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    settings.LUBDUB_STORAGE_CORS_ORIGINS = [SITE, LOCAL]
    assert storage.bucket_cors_rules() == []

    said = prepare_storage()

    [rule] = browser_upload_rules()
    assert rule["AllowedOrigins"] == [SITE, LOCAL]
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD", "PUT"]
    assert rule["AllowedHeaders"] == ["*"]
    assert rule["ExposeHeaders"] == ["ETag"]
    assert f"bucket CORS set: PUT, GET, HEAD from {SITE}, {LOCAL}" in said
    assert "storage ready" in said
    # The server answers a browser's preflight by the rule.
    allowed = preflight(SITE)
    assert allowed.status == 200
    assert allowed.getheader("Access-Control-Allow-Origin") == SITE
    assert "PUT" in (allowed.getheader("Access-Control-Allow-Methods") or "")
    assert "ETag" in (allowed.getheader("Access-Control-Expose-Headers") or "")
    assert preflight("https://elsewhere.example.com").status == 403  # an origin the rule does not name


def test_it_sets_the_rule_once_keeps_other_rules_and_follows_a_changed_origin_list(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    operators = {
        "ID": "reports-viewer",
        "AllowedOrigins": ["https://viewer.example.org"],
        "AllowedMethods": ["GET"],
    }
    storage._s3_client().put_bucket_cors(
        Bucket=storage._bucket(), CORSConfiguration={"CORSRules": [operators]}
    )
    settings.LUBDUB_STORAGE_CORS_ORIGINS = [SITE]
    prepare_storage()
    first = storage.bucket_cors_rules()

    again = prepare_storage()

    assert "bucket CORS already set" in again
    assert storage.bucket_cors_rules() == first
    assert [rule["ID"] for rule in first] == ["reports-viewer", storage.BROWSER_UPLOAD_RULE_ID]

    settings.LUBDUB_STORAGE_CORS_ORIGINS = [SITE, "https://*.clinics.example.org"]
    assert "bucket CORS set" in prepare_storage()
    [rule] = browser_upload_rules()
    assert rule["AllowedOrigins"] == [SITE, "https://*.clinics.example.org"]
    assert [rule["ID"] for rule in storage.bucket_cors_rules()] == [
        "reports-viewer",
        storage.BROWSER_UPLOAD_RULE_ID,
    ]


def test_it_says_so_and_sets_nothing_without_origins(
    private_s3: subprocess.Popen[bytes], settings: Any
) -> None:
    settings.LUBDUB_STORAGE_CORS_ORIGINS = []

    said = prepare_storage()

    assert "bucket CORS not set: no LUBDUB_STORAGE_CORS_ORIGINS" in said
    assert "storage ready" in said
    assert storage.bucket_cors_rules() == []


class NoBucketCorsFront(http.server.ThreadingHTTPServer):
    """A storage server without a bucket CORS API, as MinIO's community server is:
    the CORS calls are answered 501 NotImplemented, every other request goes to
    the real S3-API server behind."""

    def __init__(self, behind: str) -> None:
        self.behind = urllib.parse.urlsplit(behind).netloc
        super().__init__(("127.0.0.1", 0), _Front)
        self.cors_calls: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NoBucketCorsFront

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "cors" in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True):
            self.server.cors_calls.append(self.command)
            self._send(
                501,
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code><Message>"
                b"A header you provided implies functionality that is not implemented</Message></Error>",
                {"Content-Type": "application/xml"},
            )
            return
        upstream = http.client.HTTPConnection(self.server.behind, timeout=30)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        passed = {
            name: value
            for name, value in answer.getheaders()
            if name.lower() not in {"content-length", "connection"}
        }
        self._send(answer.status, data, passed)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def no_bucket_cors(private_s3: subprocess.Popen[bytes], settings: Any) -> Iterator[NoBucketCorsFront]:
    options = settings.STORAGES["default"]["OPTIONS"]
    front = NoBucketCorsFront(options["endpoint_url"])
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {**options, "endpoint_url": front.url}},
    }
    try:
        yield front
    finally:
        front.shutdown()
        front.server_close()


def test_it_skips_the_rule_with_a_message_where_the_server_has_no_bucket_cors(
    no_bucket_cors: NoBucketCorsFront, settings: Any
) -> None:
    settings.LUBDUB_STORAGE_CORS_ORIGINS = [SITE]

    said = prepare_storage()

    assert no_bucket_cors.cors_calls  # it asked, and was told there is no such API
    assert "bucket CORS skipped: the storage server has no bucket CORS API (NotImplemented)" in said
    assert f"allow PUT from {SITE} in the server's own CORS settings" in said
    assert "storage ready" in said
    storage.put_bytes("probe/after-prepare", b"still usable")  # through the front, to the real server
    assert storage.read_bytes("probe/after-prepare") == b"still usable"


def _settings_value(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DJANGO_") and key not in {"LUBDUB_STORAGE_CORS_ORIGINS", "LUBDUB_PUBLIC_URL"}
    }
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(','.join(settings.LUBDUB_STORAGE_CORS_ORIGINS))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DJANGO_SECRET_KEY": "x" * 50, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_origins_default_to_the_trusted_ones_and_the_public_urls_and_a_bad_one_stops_start_up() -> None:
    derived = _settings_value(
        {
            "DJANGO_CSRF_TRUSTED_ORIGINS": f"{SITE},https://*.clinics.example.org",
            "LUBDUB_PUBLIC_URL": f"{SITE}/screening/",
        }
    )
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.strip() == f"{SITE},https://*.clinics.example.org"

    given = _settings_value({"DJANGO_CSRF_TRUSTED_ORIGINS": SITE, "LUBDUB_STORAGE_CORS_ORIGINS": f"{LOCAL}/"})
    assert given.stdout.strip() == LOCAL

    refused = _settings_value({"LUBDUB_STORAGE_CORS_ORIGINS": f"{SITE}/upload"})
    assert refused.returncode != 0
    assert f"LUBDUB_STORAGE_CORS_ORIGINS: '{SITE}/upload' is not an origin" in refused.stderr
