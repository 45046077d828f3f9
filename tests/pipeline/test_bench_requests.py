"""The benchmark counts object-store requests from the S3-API server's own log.

Real requests through the app's storage module to the server of .services, read
back from its log and sorted by kind as `manage.py bench` sorts them.
"""

import uuid
from urllib.parse import urlsplit

from django.conf import settings

from bench import s3_requests
from jobs import storage
from jobs.management.commands.bench import SERVICES, bucket_name


def test_it_counts_the_apps_requests_from_the_servers_log() -> None:
    assert storage.uses_s3()
    path = s3_requests.server_log(SERVICES, urlsplit(settings.S3_ENDPOINT_URL).port)
    assert path is not None, "the S3-API server of .services writes no request log"
    log = s3_requests.RequestLog(path)
    run = uuid.uuid4().hex
    upload, pack, report = f"uploads/{run}/a.zip", f"packs/{run}", f"reports/{run}/m.csv"
    log.mark()

    storage.put_bytes(upload, b"PK" * 10)
    storage.read_range(upload, 0, 4)
    storage.put_bytes(pack, b"RIFF" * 10)
    storage.read_range(pack, 4, 8)
    storage.put_bytes(report, b"path,label\n")
    for key in (upload, pack, report):
        storage.delete(key)

    # Only this test's keys: the server is shared with other buckets and runs.
    lines = [line for line in log.lines_since_mark() if run in line]
    assert dict(s3_requests.count_requests(lines, bucket_name())) == {
        s3_requests.UPLOAD: 1,
        s3_requests.AUDIO: 5,  # the upload read and deleted; the pack written, read and deleted
        s3_requests.REPORTS: 2,
        s3_requests.OTHER: 0,
    }
