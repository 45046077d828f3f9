"""The only module that names storage keys and talks to object storage.

Two backends sit behind Django's default storage: the local filesystem (the
embedded default) and S3-compatible storage through django-storages. Large
objects are streamed in both directions, so nothing holds a whole archive in
memory: an upload is read with a few ranged GETs and one streamed GET on S3
(read_head, read_tail, read_range, open_from), other objects with ranged GETs.
"""

import contextlib
import datetime
import functools
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
READ_BLOCK = 1024 * 1024
SINGLE_PUT_BYTES = 8 * 1024 * 1024  # boto3's own multipart threshold
T = TypeVar("T")


class StorageUnavailable(ConnectionError):
    """Storage could not be reached; transient, worth a retry."""


class BucketMissing(Exception):
    """The bucket does not exist and S3_CREATE_BUCKET does not allow creating it.

    Not transient: retrying in seconds will not bring it back, an operator will.
    """


def upload_key(batch_id: UUID, filename: str) -> str:
    safe = _UNSAFE.sub("_", os.path.basename(filename)).strip("._") or "upload"
    return f"uploads/{batch_id}/{safe[:120]}"


def recording_key(sha256: str) -> str:
    return f"recordings/{sha256}"


def pack_key(pack_id: UUID) -> str:
    """The audio of several recordings in one object (jobs.services.packs)."""
    return f"packs/{pack_id}"


def is_pack_key(key: str) -> bool:
    return key.startswith("packs/")


def report_key(batch_id: UUID, model_slug: str, fmt: str) -> str:
    return f"reports/{batch_id}/{_UNSAFE.sub('_', model_slug)}.{fmt}"


def plot_key(sha256: str, name: str) -> str:
    return f"plots/{sha256}/{_UNSAFE.sub('_', name)}"


def model_key(name: str, version: str) -> str:
    return f"models/{_UNSAFE.sub('_', name)}/{_UNSAFE.sub('_', version)}.zip"


def uses_s3() -> bool:
    return bool(settings.USE_S3)


@functools.cache
def _s3_client() -> Any:
    # One client per process: boto3 clients are thread-safe, unlike the
    # resource objects django-storages keeps per thread.
    return _build_client(
        connect_timeout=settings.LUBDUB_STORAGE_CONNECT_TIMEOUT_S,
        read_timeout=settings.LUBDUB_STORAGE_READ_TIMEOUT_S,
        max_attempts=settings.LUBDUB_STORAGE_MAX_ATTEMPTS,
    )


def prepare_client() -> None:
    """Build this process's S3 client now (no request is made), when storage is S3.

    Building one loads botocore's service descriptions: about a third of a second,
    which a worker would otherwise spend inside the first task that touches
    storage, with a batch waiting on it.
    """
    if uses_s3():
        _s3_client()


@functools.cache
def _probe_client(timeout: float) -> Any:
    # The health check's own client: one attempt, so a hung store leaves no
    # probe thread behind for longer than the check itself waits.
    return _build_client(connect_timeout=timeout, read_timeout=timeout, max_attempts=1)


# Work the storage does on a whole large object before it answers (joining a
# multipart upload's parts, copying ranges, the first byte of a GET that the local
# S3-API server builds in memory) takes longer than a request's usual read timeout:
# joining 64 parts of 16 MiB took 11.4 s on the local server.
LONG_READ_TIMEOUT_S = 300.0


@functools.cache
def _long_client() -> Any:
    return _build_client(
        connect_timeout=settings.LUBDUB_STORAGE_CONNECT_TIMEOUT_S,
        read_timeout=LONG_READ_TIMEOUT_S,
        max_attempts=settings.LUBDUB_STORAGE_MAX_ATTEMPTS,
    )


def _build_client(*, connect_timeout: float, read_timeout: float, max_attempts: int) -> Any:
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = settings.STORAGES["default"]["OPTIONS"]  # type: ignore[index]
    return boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        region_name=options["region_name"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Tries in all, the first included (botocore's `max_attempts` counts only retries).
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=32,
        ),
    )


def forget_clients() -> None:
    """Drop the cached clients, so changed storage settings (tests) take effect."""
    _s3_client.cache_clear()
    _probe_client.cache_clear()
    _long_client.cache_clear()


def _bucket() -> str:
    return str(settings.STORAGES["default"]["OPTIONS"]["bucket_name"])  # type: ignore[index]


def _translate(exc: Exception) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return _bucket_missing()
        if code in {"NoSuchKey", "404", "NotFound", "InvalidRange", "NoSuchUpload"}:
            # InvalidRange: the object is shorter than the range asked for;
            # NoSuchUpload: a multipart upload already completed or aborted.
            return FileNotFoundError(str(exc))
        if code in {"SlowDown", "ServiceUnavailable", "InternalError", "503", "500"}:
            return StorageUnavailable(str(exc))
        return exc
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(str(exc))
    return exc


def _bucket_missing() -> BucketMissing:
    advice = (
        "."
        if settings.S3_CREATE_BUCKET
        else " and S3_CREATE_BUCKET is off: create it, or run manage.py prepare_storage"
        " with S3_CREATE_BUCKET=1."
    )
    return BucketMissing(f'The storage bucket "{_bucket()}" does not exist{advice}')


def ensure_bucket() -> None:
    """Create the bucket when asked to (development); otherwise it must exist."""
    if uses_s3():
        _ready(_s3_client())


def _ready(client: Any) -> None:
    """Raise unless the bucket answers; a missing one is created where S3_CREATE_BUCKET allows.

    Storage that lost its bucket (an in-memory server restarted, a bucket
    deleted by mistake) then recovers by itself instead of waiting for
    `prepare_storage` to be run by hand.
    """
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=_bucket())
    except ClientError as exc:
        # HEAD answers carry no body: a missing bucket is a bare 404.
        if exc.response.get("Error", {}).get("Code", "") not in {"404", "NoSuchBucket", "NotFound"}:
            raise _translate(exc) from exc
        if not settings.S3_CREATE_BUCKET:
            raise _bucket_missing() from exc
        _create_bucket(client)
    except Exception as exc:
        raise _translate(exc) from exc


def _create_bucket(client: Any) -> None:
    from botocore.exceptions import ClientError

    region = settings.STORAGES["default"]["OPTIONS"].get("region_name")  # type: ignore[index]
    location = {} if region in (None, "", "us-east-1") else {"LocationConstraint": region}
    try:
        if location:
            client.create_bucket(Bucket=_bucket(), CreateBucketConfiguration=location)
        else:
            client.create_bucket(Bucket=_bucket())
    except ClientError as exc:
        # Another process got there first: the bucket is what was wanted.
        if exc.response.get("Error", {}).get("Code", "") not in {
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        }:
            raise _translate(exc) from exc
    except Exception as exc:
        raise _translate(exc) from exc


def _call(request: Callable[[], T]) -> T:
    """One S3 request; if the bucket has gone and may be created, create it and try once more."""
    try:
        return request()
    except Exception as exc:
        translated = _translate(exc)
        if not (isinstance(translated, BucketMissing) and settings.S3_CREATE_BUCKET):
            raise translated from exc
    _create_bucket(_s3_client())
    try:
        return request()
    except Exception as exc:
        raise _translate(exc) from exc


# --- the bucket's CORS rule: the upload page sends parts straight to the bucket --
#
# A browser PUTs a resumable upload's parts to presigned links of the bucket only
# when the bucket's CORS rule allows the page's origin; ETag is exposed so a page
# may read each part's MD5 from the answer.

BROWSER_UPLOAD_RULE_ID = "lubdub-browser-uploads"
# What a server that keeps CORS for the whole server, not per bucket, answers the
# bucket CORS API with (MinIO's community server: NotImplemented).
_NO_BUCKET_CORS = {"NotImplemented", "501", "MethodNotAllowed"}


class CorsUnsupported(Exception):
    """The storage server has no per-bucket CORS API; its own settings decide."""


def browser_upload_rule(origins: Sequence[str]) -> dict[str, Any]:
    return {
        "ID": BROWSER_UPLOAD_RULE_ID,
        "AllowedOrigins": list(origins),
        "AllowedMethods": ["PUT", "GET", "HEAD"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3600,
    }


def allow_browser_uploads(origins: Sequence[str]) -> bool:
    """Make the bucket's browser-upload CORS rule allow `origins` (S3 only); False when it already did.

    The bucket's other rules (an operator's own, by their IDs) are kept. Raises
    CorsUnsupported when the server has no bucket CORS API.
    """
    wanted = browser_upload_rule(origins)
    rules = bucket_cors_rules()
    ours = [rule for rule in rules if rule.get("ID") == BROWSER_UPLOAD_RULE_ID]
    if [_comparable(rule) for rule in ours] == [_comparable(wanted)]:
        return False
    others = [rule for rule in rules if rule.get("ID") != BROWSER_UPLOAD_RULE_ID]
    configuration = {"CORSRules": [*others, wanted]}
    _cors_call(lambda: _s3_client().put_bucket_cors(Bucket=_bucket(), CORSConfiguration=configuration))
    return True


def bucket_cors_rules() -> list[dict[str, Any]]:
    """The bucket's CORS rules; [] when it has none."""
    from botocore.exceptions import ClientError

    try:
        answer = _cors_call(lambda: _s3_client().get_bucket_cors(Bucket=_bucket()))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "NoSuchCORSConfiguration":
            return []
        raise
    return list(answer.get("CORSRules", []))


def _comparable(rule: dict[str, Any]) -> dict[str, Any]:
    return {name: sorted(value) if isinstance(value, list) else value for name, value in rule.items()}


def _cors_call(request: Callable[[], T]) -> T:
    from botocore.exceptions import ClientError

    try:
        return _call(request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _NO_BUCKET_CORS:
            raise CorsUnsupported(f"the storage server has no bucket CORS API ({code})") from exc
        raise


def put(key: str, content: IO[bytes]) -> int:
    """Stream `content` to `key`, replacing what was there; returns bytes written."""
    content.seek(0, io.SEEK_END)
    size = content.tell()
    content.seek(0)
    if uses_s3():

        def send() -> None:
            content.seek(0)  # again from the start when the bucket had to be created first
            if size <= SINGLE_PUT_BYTES:
                # One request; boto3's upload_fileobj would start a transfer
                # manager and its threads for every recording.
                _s3_client().put_object(Bucket=_bucket(), Key=key, Body=content, ContentLength=size)
            else:
                _put_in_parts(key, content)

        _call(send)
    else:
        default_storage.save(key, File(content))
    return size


def _put_in_parts(key: str, content: IO[bytes]) -> None:
    """A multipart upload that holds one part in memory.

    boto3's upload_fileobj reads the parts of a seekable file ahead of the
    network, so a web process uploading a large archive grew with its size.
    """
    client, bucket = _s3_client(), _bucket()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[dict[str, Any]] = []
    try:
        while block := content.read(SINGLE_PUT_BYTES):
            number = len(parts) + 1
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=block
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # Best effort: the original error is the one to report.
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def put_bytes(key: str, data: bytes) -> int:
    return put(key, io.BytesIO(data))


def put_if_absent(key: str, content: IO[bytes]) -> bool:
    """Store content-addressed data once; returns False when it was already there."""
    if exists(key):
        return False
    put(key, content)
    return True


def exists(key: str) -> bool:
    if not uses_s3():
        return bool(default_storage.exists(key))
    try:
        _call(lambda: _s3_client().head_object(Bucket=_bucket(), Key=key))
    except FileNotFoundError:
        return False
    return True


def read_bytes(key: str) -> bytes:
    """Whole object in memory: for recordings and reports, never archives."""
    if uses_s3():
        return _call(lambda: bytes(_s3_client().get_object(Bucket=_bucket(), Key=key)["Body"].read()))
    with default_storage.open(key, "rb") as handle:
        return bytes(handle.read())


def read_range(key: str, start: int, length: int) -> bytes:
    """`length` bytes of the object from `start`: one ranged GET on S3.

    A short answer (the object is smaller than the row says) raises
    FileNotFoundError: the bytes the caller wants are not there.
    """
    if length <= 0:
        return b""
    if uses_s3():
        ranged = f"bytes={start}-{start + length - 1}"
        data = _call(
            lambda: bytes(_s3_client().get_object(Bucket=_bucket(), Key=key, Range=ranged)["Body"].read())
        )
    else:
        with default_storage.open(key, "rb") as handle:
            handle.seek(start)
            data = bytes(handle.read(length))
    if len(data) != length:
        raise FileNotFoundError(f"{key} holds {len(data)} of the {length} bytes at {start}")
    return data


def read_head(key: str, length: int) -> bytes:
    """Up to `length` bytes from the start (fewer when the object is shorter): one ranged GET on S3."""
    if uses_s3():
        ranged = f"bytes=0-{length - 1}"
        try:
            return _call(
                lambda: bytes(_s3_client().get_object(Bucket=_bucket(), Key=key, Range=ranged)["Body"].read())
            )
        except FileNotFoundError:
            if size(key) == 0:  # no range of an empty object is satisfiable
                return b""
            raise
    with default_storage.open(key, "rb") as handle:
        return bytes(handle.read(length))


def read_tail(key: str, length: int) -> tuple[bytes, int]:
    """The last `length` bytes (all of a shorter object) and the object's size: one GET on S3."""
    if uses_s3():

        def get() -> tuple[bytes, int]:
            answer = _s3_client().get_object(Bucket=_bucket(), Key=key, Range=f"bytes=-{length}")
            data = bytes(answer["Body"].read())
            # "bytes 100-199/200"; absent when the whole object came back.
            whole = answer.get("ContentRange", "")
            return data, int(whole.rsplit("/", 1)[1]) if "/" in whole else len(data)

        return _call(get)
    with default_storage.open(key, "rb") as handle:
        handle.seek(0, io.SEEK_END)
        total = handle.tell()
        handle.seek(max(0, total - length))
        return bytes(handle.read()), total


def open_from(key: str, start: int, *, buffer_size: int = READ_BLOCK, patient: bool = False) -> IO[bytes]:
    """A forward-only reader of the object from `start` to its end: one streamed GET on S3.

    A failure while reading (a dropped connection, a timeout) raises
    StorageUnavailable: worth a retry. ``patient`` waits up to LONG_READ_TIMEOUT_S
    for each read, for a large object read whole.
    """
    if uses_s3():
        ranged = f"bytes={start}-"
        client = _long_client() if patient else _s3_client()
        body = _call(lambda: client.get_object(Bucket=_bucket(), Key=key, Range=ranged)["Body"])
        return io.BufferedReader(_StreamedS3Reader(key, body), buffer_size=buffer_size)
    handle = default_storage.open(key, "rb")
    handle.seek(start)
    return handle  # type: ignore[no-any-return]


def open_stream(key: str, *, buffer_size: int = READ_BLOCK) -> IO[bytes]:
    """A seekable, buffered reader; on S3 every read is a ranged GET of `buffer_size` bytes."""
    if uses_s3():
        return io.BufferedReader(_RangedS3Reader(key), buffer_size=buffer_size)
    return default_storage.open(key, "rb")  # type: ignore[no-any-return]


def iter_chunks(key: str) -> Iterator[bytes]:
    with open_stream(key) as handle:
        while block := handle.read(READ_BLOCK):
            yield block


def size(key: str) -> int:
    if uses_s3():
        return int(_call(lambda: _s3_client().head_object(Bucket=_bucket(), Key=key))["ContentLength"])
    return int(default_storage.size(key))


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime.datetime  # aware, UTC


def list_objects(prefix: str, *, page_size: int = 1000) -> Iterator[StoredObject]:
    """Every object whose key starts with `prefix` (a folder, ending in "/"), in key order.

    On S3 one LIST request per `page_size` objects; for sweeps that compare
    what is stored with what the database refers to.
    """
    if not prefix.endswith("/"):
        raise ValueError(
            f"list a folder, ending in '/', not {prefix!r}"
        )  # the backends agree on folders only
    if not uses_s3():
        yield from _list_files(prefix)
        return
    continuation: dict[str, str] = {}
    while True:
        answer = _list_page(prefix, page_size, continuation)
        for entry in answer.get("Contents", []):
            modified = entry["LastModified"].astimezone(datetime.UTC)
            yield StoredObject(entry["Key"], int(entry["Size"]), modified)
        if not answer.get("IsTruncated"):
            return
        continuation = {"ContinuationToken": answer["NextContinuationToken"]}


def _list_page(prefix: str, page_size: int, continuation: dict[str, str]) -> Any:
    return _call(
        lambda: _s3_client().list_objects_v2(
            Bucket=_bucket(), Prefix=prefix, MaxKeys=page_size, **continuation
        )
    )


def _list_files(prefix: str) -> Iterator[StoredObject]:
    root = default_storage.path("")
    folder = default_storage.path(prefix)
    found = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue  # deleted while listing
            key = os.path.relpath(path, root).replace(os.sep, "/")
            modified = datetime.datetime.fromtimestamp(stat.st_mtime, tz=datetime.UTC)
            found.append(StoredObject(key, stat.st_size, modified))
    yield from sorted(found, key=lambda stored: stored.key)


def delete(key: str) -> None:
    if uses_s3():
        _call(lambda: _s3_client().delete_object(Bucket=_bucket(), Key=key))
        return
    default_storage.delete(key)


# --- parts of a resumable upload (jobs.services.resumable) -------------------
#
# On S3 the parts are those of a multipart upload to the final key, sent by the
# client through presigned links; on the filesystem they are files in a folder of
# their own, named "<number>.<md5>", written by the app's part endpoint.

PART_NAME = re.compile(r"^(\d{5})\.([0-9a-f]{32})$")


@dataclass(frozen=True)
class StoredPart:
    number: int
    size: int
    etag: str  # the MD5 of its bytes, in hex (S3's part ETag)


def parts_folder(upload_id: UUID) -> str:
    return f"resumable/{upload_id}/"


def start_parts(key: str) -> str:
    """Begin a multipart upload to `key`: S3's UploadId; "" on the filesystem, where parts are files."""
    if not uses_s3():
        return ""
    answer = _call(lambda: _s3_client().create_multipart_upload(Bucket=_bucket(), Key=key))
    return str(answer["UploadId"])


def part_url(key: str, multipart_id: str, number: int, *, seconds: int) -> str:
    """A presigned link the client PUTs part `number` to, straight to S3."""
    return str(
        _s3_client().generate_presigned_url(
            "upload_part",
            Params={"Bucket": _bucket(), "Key": key, "UploadId": multipart_id, "PartNumber": number},
            ExpiresIn=seconds,
        )
    )


def list_parts(key: str, multipart_id: str, folder: str) -> list[StoredPart]:
    """The parts received, by number; FileNotFoundError when the multipart upload is gone."""
    if not uses_s3():
        return sorted(_part_files(folder).values(), key=lambda part: part.number)
    parts: list[StoredPart] = []
    marker = 0
    while True:
        answer = _call(
            lambda marker=marker: _s3_client().list_parts(  # type: ignore[misc]
                Bucket=_bucket(), Key=key, UploadId=multipart_id, PartNumberMarker=marker
            )
        )
        for entry in answer.get("Parts", []):
            parts.append(StoredPart(int(entry["PartNumber"]), int(entry["Size"]), entry["ETag"].strip('"')))
        if not answer.get("IsTruncated"):
            return parts
        marker = int(answer["NextPartNumberMarker"])


def _part_files(folder: str) -> dict[int, StoredPart]:
    found: dict[int, StoredPart] = {}
    directory = default_storage.path(folder)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            named = PART_NAME.match(entry.name)
            if named:
                with contextlib.suppress(FileNotFoundError):  # replaced while listing
                    number = int(named[1])
                    found[number] = StoredPart(number, entry.stat().st_size, named[2])
    return found


def put_part(folder: str, number: int, content: IO[bytes], length: int) -> StoredPart:
    """Write part `number` (filesystem only) from `content`, which must hold `length` bytes.

    It is written aside and renamed into place, so a body cut short leaves no
    part behind and a part sent again replaces the old one whole. Raises
    EOFError when fewer bytes came.
    """
    directory = Path(default_storage.path(folder))
    directory.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.md5(usedforsecurity=False), 0
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".incoming-", delete=False)
    try:
        with handle:
            while written < length and (block := content.read(min(READ_BLOCK, length - written))):
                handle.write(block)
                digest.update(block)
                written += len(block)
        if written != length:
            raise EOFError(f"part {number}: {written} of {length} bytes came")
        name = f"{number:05d}.{digest.hexdigest()}"
        os.replace(handle.name, directory / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise
    for entry in directory.glob(f"{number:05d}.*"):
        if entry.name != name:
            entry.unlink(missing_ok=True)
    return StoredPart(number, length, digest.hexdigest())


def assemble_parts(key: str, multipart_id: str, folder: str, parts: list[StoredPart]) -> None:
    """Join the parts, in order, into the object at `key`.

    On S3 this completes the multipart upload (its parts become the object;
    FileNotFoundError when it is no longer there, completed or aborted); on the
    filesystem the parts are copied into one file and stay until discarded.
    """
    if uses_s3():
        listed = [{"ETag": f'"{part.etag}"', "PartNumber": part.number} for part in parts]
        _call(
            lambda: _long_client().complete_multipart_upload(
                Bucket=_bucket(), Key=key, UploadId=multipart_id, MultipartUpload={"Parts": listed}
            )
        )
        return
    target = Path(default_storage.path(key))
    target.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(default_storage.path(folder))
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".assembling-", delete=False) as joined:
        try:
            for part in parts:
                with (directory / f"{part.number:05d}.{part.etag}").open("rb") as source:
                    shutil.copyfileobj(source, joined, READ_BLOCK)
        except BaseException:
            os.unlink(joined.name)
            raise
    os.replace(joined.name, target)


def split_into_parts(key: str, part_size: int) -> str:
    """Turn the object at `key` back into the parts of a new multipart upload (S3 only).

    Server-side copies (UploadPartCopy), so nothing passes through this
    process; the object is deleted. Returns the new UploadId.
    """
    client, bucket = _long_client(), _bucket()
    total = size(key)
    multipart_id = start_parts(key)
    for number, start in enumerate(range(0, total, part_size), start=1):
        ranged = f"bytes={start}-{min(start + part_size, total) - 1}"
        _call(
            lambda number=number, ranged=ranged: client.upload_part_copy(  # type: ignore[misc]
                Bucket=bucket,
                Key=key,
                UploadId=multipart_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": key},
                CopySourceRange=ranged,
            )
        )
    delete(key)
    return multipart_id


def discard_parts(key: str, multipart_id: str, folder: str) -> None:
    """Abort the multipart upload (S3) or delete the parts' folder; nothing left is no error."""
    if uses_s3():
        if multipart_id:
            with contextlib.suppress(FileNotFoundError):
                _call(
                    lambda: _s3_client().abort_multipart_upload(
                        Bucket=_bucket(), Key=key, UploadId=multipart_id
                    )
                )
        return
    shutil.rmtree(default_storage.path(folder), ignore_errors=True)


def signed_url(key: str, *, filename: str, content_type: str, seconds: int | None = None) -> str | None:
    """A short-lived direct link on S3; None on the filesystem backend.

    Without S3 the caller serves the object itself through an authenticated view.
    """
    if not uses_s3():
        return None
    return str(
        _s3_client().generate_presigned_url(
            "get_object",
            Params={
                "Bucket": _bucket(),
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{_UNSAFE.sub("_", filename)}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=seconds or settings.SIGNED_URL_SECONDS,
        )
    )


def check(*, timeout: float | None = None) -> None:
    """Raise if storage cannot be used (for the health endpoint); a lost bucket is
    created again where S3_CREATE_BUCKET allows (see `_ready`).

    ``timeout`` bounds the S3 requests (one attempt each) instead of the usual
    timeouts and retries.
    """
    if uses_s3():
        _ready(_s3_client() if timeout is None else _probe_client(timeout))
        return
    root = settings.MEDIA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):
        raise StorageUnavailable(f"{root} is not writable")


class SeekableReader(io.RawIOBase):
    """A raw reader over an object of known ``size``: position and seeking; subclasses read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position


class _RangedS3Reader(SeekableReader):
    """A seekable raw reader over one S3 object using ranged GETs."""

    def __init__(self, key: str) -> None:
        super().__init__(size(key))
        self._key = key

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.size:
            return 0
        end = min(self._position + len(buffer), self.size) - 1
        ranged = f"bytes={self._position}-{end}"
        data = _call(
            lambda: _s3_client().get_object(Bucket=_bucket(), Key=self._key, Range=ranged)["Body"].read()
        )
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class _StreamedS3Reader(io.RawIOBase):
    """The body of one GET, read forward; transport failures become StorageUnavailable."""

    def __init__(self, key: str, body: Any) -> None:
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except Exception as exc:
            raise StorageUnavailable(f"reading {self._key} failed: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()
