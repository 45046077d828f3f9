"""Object-store requests of a benchmark run, counted by the S3-API server itself.

The local S3-API server (moto, started by infra/services.sh) writes one line per
request it answers to its log, ``.services/s3/s3.log``:

    127.0.0.1 - - [03/Dec/2026 16:42:36] "GET /lubdub/packs/<uuid> HTTP/1.1" 206 -

(some statuses are wrapped in terminal colour codes). Counting there, and not
with a hook on one process's boto3 client, sees every process that talks to
storage (the web, both workers, the client's downloads of presigned links)
without changing how any of them is started. Only the app's bucket is counted:
tests share the server with buckets of their own.

Requests are sorted by what they touch:

- ``upload``: the web storing an uploaded archive (PUT, and POST for the parts);
- ``ingest + analysis``: reading and removing the uploaded archive
  (GET, HEAD, DELETE of ``uploads/``) and every request on stored audio
  (``packs/``, ``recordings/``), what the issue's per-recording target counts;
- ``reports``: writing the reports and downloading them;
- ``other``: anything else in the bucket (the bucket itself, models, plots).
"""

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

UPLOAD = "upload"
AUDIO = "ingest + analysis"
REPORTS = "reports"
OTHER = "other"
KINDS = (UPLOAD, AUDIO, REPORTS, OTHER)

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')
_AUDIO_FOLDERS = ("packs/", "recordings/")


def request_kind(method: str, target: str, bucket: str) -> str | None:
    """The kind of one request (path-style addressing), or None when it is not for ``bucket``."""
    path = urlsplit(target).path
    if path != f"/{bucket}" and not path.startswith(f"/{bucket}/"):
        return None
    key = unquote(path[len(bucket) + 2 :])
    if key.startswith("uploads/"):
        return UPLOAD if method in ("PUT", "POST") else AUDIO
    if key.startswith(_AUDIO_FOLDERS):
        return AUDIO
    if key.startswith("reports/"):
        return REPORTS
    return OTHER


def count_requests(lines: Iterable[str], bucket: str) -> Counter[str]:
    """Requests for ``bucket`` by kind, from the server's log lines (other lines are ignored)."""
    counts: Counter[str] = Counter({kind: 0 for kind in KINDS})
    for line in lines:
        found = _REQUEST.search(_COLOUR.sub("", line))
        if found is None:
            continue
        kind = request_kind(found["method"], found["target"], bucket)
        if kind is not None:
            counts[kind] += 1
    return counts


class RequestLog:
    """The lines a server's log gained since :meth:`mark`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def lines_since_mark(self) -> list[str]:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            written = handle.read()
        # A line being written as we read is cut off: count only whole lines.
        return written.decode(errors="replace").splitlines()[: written.count(b"\n")]


def server_log(services_dir: Path, endpoint_port: int | None) -> Path | None:
    """The request log of the S3-API server of ``services_dir`` when it listens on ``endpoint_port``.

    None when there is none, or when the app's endpoint is another server (its
    requests would not be in that log).
    """
    folder = services_dir / "s3"
    try:
        port = int((folder / "port").read_text().strip())
    except (OSError, ValueError):
        return None
    log = folder / "s3.log"
    return log if port == endpoint_port and log.is_file() else None
