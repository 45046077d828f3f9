"""Resumable uploads: a large file sent in parts, which survives a dropped connection.

1. `open_upload` checks what a single-request upload checks before its body
   (the size limit, the batch options) and the declared SHA-256, chooses the
   batch's id, and so its upload key, and on S3 starts a multipart upload to
   that key.
2. The client sends the parts: on S3 straight to storage through presigned
   links (`part_links`), so the web process never carries the bytes; on the
   filesystem through the app (`receive_part`). `describe` lists the parts that
   arrived, so a client whose connection dropped sends only the others.
3. `complete` joins the parts, checks the size and the SHA-256 by streaming the
   stored object, and makes the batch as a single-request upload does
   (`uploads.new_batch`, `uploads.save_batch`). A mismatch is refused and the
   parts stay (on S3 they are made again from the joined object by server-side
   copies), so the client can send the wrong ones again and complete.
4. `expire_abandoned` (Celery beat, hourly) closes uploads that had no request
   for LUBDUB_UPLOAD_EXPIRY_SECONDS, aborts their multipart uploads and deletes
   their parts.
"""

import datetime
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from jobs import storage
from jobs.models import Batch, Organisation, ResumableUpload
from jobs.services import sniff, uploads
from jobs.services.uploads import UploadRejected

MIB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit per multipart upload
# A completion claimed longer ago than this belongs to a request that died (the
# web's own timeout is 15 minutes): another request may take it over.
COMPLETE_CLAIM_TIMEOUT = datetime.timedelta(minutes=30)
OPTION_NAMES = ("name", "model", "priority", "site", "webhook_url")
EXPIRE_PAGE = 200
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
Status = ResumableUpload.Status


@dataclass(frozen=True)
class UploadState:
    """An upload with the parts storage holds and the numbers still to send."""

    upload: ResumableUpload
    parts: list[storage.StoredPart]
    missing: list[int]


def open_upload(
    *,
    user: User,
    organisation: Organisation,
    filename: str,
    size: int,
    sha256: str,
    options: dict[str, str],
    idempotency_key: str = "",
) -> tuple[ResumableUpload, bool]:
    """A new upload, or the one an earlier request with this Idempotency-Key opened; True if new.

    ``options`` are the batch's (name, model, priority, site, webhook_url), as
    for a single-request upload; they are checked now and again at completion.
    """
    earlier = _opened_before(user, idempotency_key)
    if earlier is not None:
        return _started(earlier), False
    sha256 = sha256.strip().lower()
    if not _SHA256.match(sha256):
        raise UploadRejected("bad_sha256", "sha256 must be the file's SHA-256 digest as 64 hex digits.")
    uploads.check_size(size)
    kept = {name: str(options.get(name) or "") for name in OPTION_NAMES}
    uploads.batch_options(user=user, organisation=organisation, options=_upload_options(kept))
    batch_id = uuid.uuid4()
    upload = ResumableUpload(
        organisation=organisation,
        created_by=user,
        filename=filename[:255],
        size=size,
        sha256=sha256,
        part_size=part_size_for(size),
        batch_id=batch_id,
        storage_key=storage.upload_key(batch_id, filename),
        options=kept,
        idempotency_key=idempotency_key,
        expires_at=_expiry(),
    )
    try:
        with transaction.atomic():
            upload.save()
    except IntegrityError:
        # A retry raced the request it repeats, and lost.
        earlier = _opened_before(user, idempotency_key)
        if earlier is None:
            raise
        return _started(earlier), False
    # The row first: whatever is started in storage, the expiry can find.
    return _started(upload), True


def part_size_for(size: int) -> int:
    """LUBDUB_UPLOAD_PART_BYTES, or more (whole MiB) when that would make over 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(settings.LUBDUB_UPLOAD_PART_BYTES, -(-needed // MIB) * MIB)


def get_upload(user: User, upload_id: Any) -> ResumableUpload:
    """The user's own upload; anyone else's, or none, is a 404."""
    found = ResumableUpload.objects.filter(pk=upload_id, created_by=user).first()
    if found is None:
        raise Http404("No such upload.")
    return found


def describe(upload: ResumableUpload) -> UploadState:
    """The parts received and those still to send; asking keeps an open upload from expiring.

    Nothing is listed while the upload is being completed (its parts are being
    joined) or once it is closed.
    """
    if upload.status != Status.OPEN:
        return UploadState(upload, [], [])
    _touch(upload)
    if upload.assembled:
        joined = [storage.StoredPart(n, upload.part_length(n), "") for n in _numbers(upload)]
        return UploadState(upload, joined, [])
    parts = _stored_parts(upload)
    return UploadState(upload, parts, _missing(upload, parts))


def sendable(state: UploadState) -> list[int]:
    """The part numbers that may be sent now: all of them while the upload is open and not joined."""
    upload = state.upload
    if upload.status != Status.OPEN or upload.assembled:
        return []
    return list(_numbers(upload))


def sends_to_storage(upload: ResumableUpload) -> bool:
    """True when parts go straight to S3 (`part_links`), False when through the app."""
    return bool(upload.multipart_id)


def part_links(upload: ResumableUpload, numbers: list[int]) -> dict[int, str]:
    """Presigned S3 links for these parts (S3 storage only)."""
    seconds = settings.LUBDUB_UPLOAD_PART_URL_SECONDS
    return {
        number: storage.part_url(upload.storage_key, upload.multipart_id, number, seconds=seconds)
        for number in numbers
    }


def receive_part(
    upload: ResumableUpload, number: int, body: IO[bytes], length: int | None
) -> storage.StoredPart:
    """Store part `number` sent through the app (filesystem storage), replacing an earlier copy."""
    if sends_to_storage(upload) or storage.uses_s3():
        raise UploadRejected(
            "parts_go_to_storage",
            "On this server parts are sent straight to storage, through the links in part_urls.",
            status=409,
        )
    _check_open(upload)
    if not 1 <= number <= upload.part_count:
        raise UploadRejected("bad_part_number", f"This upload has parts 1 to {upload.part_count}.")
    expected = upload.part_length(number)
    if length != expected:
        raise UploadRejected(
            "bad_part_size", f"Part {number} holds {expected} bytes; the request declared {length}."
        )
    try:
        part = storage.put_part(storage.parts_folder(upload.pk), number, body, expected)
    except EOFError as exc:
        raise UploadRejected("incomplete_part", f"Part {number} ended early; send it again.") from exc
    _touch(upload)
    return part


def complete(upload: ResumableUpload) -> tuple[Batch, bool]:
    """Join and check the parts and make the batch; True when this call made it.

    A completed upload answers with its batch again. Refusals: `parts_missing`
    (409), `size_mismatch` and `checksum_mismatch` (422; the parts stay, to be
    sent again), `completing` (409, another request is at it), a closed upload
    (410), and the single-request upload's own (`unsupported_type`,
    `unknown_model`, ...; the upload is then aborted).
    """
    now = timezone.now()
    claimed = (
        ResumableUpload.objects.filter(pk=upload.pk)
        .filter(
            Q(status=Status.OPEN)
            | Q(status=Status.COMPLETING, completing_since__lt=now - COMPLETE_CLAIM_TIMEOUT)
        )
        .update(status=Status.COMPLETING, completing_since=now, expires_at=_expiry())
    )
    upload.refresh_from_db()
    if not claimed:
        if upload.status == Status.COMPLETED:
            return Batch.objects.get(pk=upload.batch_id), False
        if upload.status == Status.COMPLETING:
            raise UploadRejected(
                "completing",
                "Another request is completing this upload; ask for it again shortly.",
                status=409,
            )
        raise _closed(upload)
    try:
        return _finish(upload), True
    except BaseException:
        # Refused or interrupted (storage down): the client may try again.
        ResumableUpload.objects.filter(pk=upload.pk, status=Status.COMPLETING).update(
            status=Status.OPEN, completing_since=None
        )
        raise


def abort(upload: ResumableUpload) -> None:
    """The client gives the upload up: its parts are deleted. Aborting a closed one again is no error."""
    if not ResumableUpload.objects.filter(pk=upload.pk, status=Status.OPEN).update(status=Status.ABORTED):
        upload.refresh_from_db()
        if upload.status in (Status.COMPLETED, Status.COMPLETING):
            raise UploadRejected(
                "completed", f"The upload is {upload.get_status_display().lower()}.", status=409
            )
        if upload.cleaned_at is not None:
            return
    _discard(upload)


def expire_abandoned(*, now: datetime.datetime | None = None) -> int:
    """Close uploads past their expiry and delete the parts of closed ones; returns how many were cleaned.

    Safe to run twice: the parts of an upload are deleted before it is marked
    cleaned, and deleting what is gone is no error.
    """
    ResumableUpload.objects.filter(
        status__in=[Status.OPEN, Status.COMPLETING], expires_at__lt=now or timezone.now()
    ).update(status=Status.EXPIRED)
    closed = ResumableUpload.objects.filter(
        status__in=[Status.EXPIRED, Status.ABORTED], cleaned_at=None
    ).order_by("expires_at")
    cleaned = 0
    for upload in closed[:EXPIRE_PAGE]:
        _discard(upload)
        cleaned += 1
    return cleaned


# --- steps -----------------------------------------------------------------------


def _finish(upload: ResumableUpload) -> Batch:
    made = Batch.objects.filter(pk=upload.batch_id).first()
    if made is not None:  # by a request that died before it could say so
        _update(upload, status=Status.COMPLETED, completed_at=timezone.now(), error_code="")
        return made
    if not upload.assembled:
        parts = _stored_parts(upload)
        missing = _missing(upload, parts)
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise UploadRejected(
                "parts_missing",
                f"{len(missing)} parts are missing or of the wrong size: {shown}.",
                status=409,
            )
        wanted = [part for part in parts if part.number <= upload.part_count]
        try:
            storage.assemble_parts(upload.storage_key, upload.multipart_id, _folder(upload), wanted)
        except FileNotFoundError as exc:
            # A try that timed out may still have joined them (the storage's own retry then finds
            # no multipart upload): the object says so.
            if not storage.exists(upload.storage_key):
                raise _lost(upload) from exc
        _update(upload, assembled=True)
    stored = storage.size(upload.storage_key)
    if stored != upload.size:
        _refuse_content(
            upload, "size_mismatch", f"The parts hold {stored} bytes; {upload.size} were declared."
        )
    if _sha256_of(upload.storage_key) != upload.sha256:
        _refuse_content(
            upload,
            "checksum_mismatch",
            "The parts' SHA-256 is not the one declared: send again the parts whose etag differs "
            "from the MD5 of your copy, then complete again.",
        )
    try:
        batch = uploads.new_batch(
            user=upload.created_by,
            organisation=upload.organisation,
            filename=upload.filename,
            size=stored,
            head=storage.read_head(upload.storage_key, sniff.HEAD_BYTES),
            batch_id=upload.batch_id,
            options=_upload_options(upload.options),
        )
    except UploadRejected as exc:
        _update(upload, status=Status.ABORTED, error_code=exc.code)
        _discard(upload)
        raise
    uploads.save_batch(batch)
    _update(upload, status=Status.COMPLETED, completed_at=timezone.now(), error_code="")
    if not sends_to_storage(upload):
        # The joined file is the batch's upload now; its parts are copies.
        storage.discard_parts(upload.storage_key, "", _folder(upload))
    return batch


def _refuse_content(upload: ResumableUpload, code: str, message: str) -> None:
    """The joined object is not what was declared: back to parts, so some can be sent again."""
    if sends_to_storage(upload):
        multipart_id = storage.split_into_parts(upload.storage_key, upload.part_size)
        _update(upload, assembled=False, multipart_id=multipart_id, error_code=code)
    else:
        storage.delete(upload.storage_key)
        _update(upload, assembled=False, error_code=code)
    raise UploadRejected(code, message, status=422)


def _sha256_of(key: str) -> str:
    """The stored object's SHA-256, read in one stream a block at a time."""
    digest = hashlib.sha256()
    with storage.open_from(key, 0, patient=True) as stream:
        while block := stream.read(storage.READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stored_parts(upload: ResumableUpload) -> list[storage.StoredPart]:
    try:
        return storage.list_parts(upload.storage_key, upload.multipart_id, _folder(upload))
    except FileNotFoundError as exc:
        if storage.exists(upload.storage_key):
            # Joined by a request that died before it could say so.
            _update(upload, assembled=True)
            return [storage.StoredPart(n, upload.part_length(n), "") for n in _numbers(upload)]
        raise _lost(upload) from exc


def _lost(upload: ResumableUpload) -> UploadRejected:
    """Storage holds neither the parts nor the joined object: the upload is aborted, unless a
    completion claimed it since it was read (the parts are being joined)."""
    lost = ResumableUpload.objects.filter(pk=upload.pk, status=upload.status).update(
        status=Status.ABORTED, error_code="upload_lost"
    )
    if not lost:
        return UploadRejected("completing", "The upload is being completed; ask again shortly.", status=409)
    upload.status, upload.error_code = Status.ABORTED, "upload_lost"
    return UploadRejected(
        "upload_lost", "Storage no longer holds this upload's parts; start a new upload.", status=410
    )


def _missing(upload: ResumableUpload, parts: list[storage.StoredPart]) -> list[int]:
    sizes = {part.number: part.size for part in parts}
    return [n for n in _numbers(upload) if sizes.get(n) != upload.part_length(n)]


def _numbers(upload: ResumableUpload) -> range:
    return range(1, upload.part_count + 1)


def _started(upload: ResumableUpload) -> ResumableUpload:
    """On S3, the upload with its multipart upload begun (again, if an earlier try failed)."""
    if storage.uses_s3() and not upload.multipart_id and upload.status == Status.OPEN:
        upload.multipart_id = storage.start_parts(upload.storage_key)
        _update(upload, multipart_id=upload.multipart_id)
    return upload


def _discard(upload: ResumableUpload) -> None:
    storage.discard_parts(upload.storage_key, upload.multipart_id, _folder(upload))
    if upload.assembled or not sends_to_storage(upload):
        storage.delete(upload.storage_key)  # a joined copy, never a batch's: the upload is closed
    _update(upload, cleaned_at=timezone.now())


def _check_open(upload: ResumableUpload) -> None:
    if upload.status == Status.COMPLETING:
        raise UploadRejected("completing", "The upload is being completed.", status=409)
    if upload.status == Status.COMPLETED:
        raise UploadRejected("completed", "The upload is completed.", status=409)
    if upload.status != Status.OPEN:
        raise _closed(upload)


def _closed(upload: ResumableUpload) -> UploadRejected:
    if upload.status == Status.EXPIRED:
        return UploadRejected("upload_expired", "The upload expired; start a new one.", status=410)
    return UploadRejected("upload_aborted", "The upload was aborted; start a new one.", status=410)


def _opened_before(user: User, key: str) -> ResumableUpload | None:
    if not key:
        return None
    return ResumableUpload.objects.filter(created_by=user, idempotency_key=key).first()


def _upload_options(options: dict[str, str]) -> uploads.UploadOptions:
    return uploads.UploadOptions(
        name=options.get("name", ""),
        model=options.get("model") or None,
        priority=options.get("priority") or None,
        site=options.get("site") or None,
        webhook_url=options.get("webhook_url", ""),
    )


def _folder(upload: ResumableUpload) -> str:
    return storage.parts_folder(upload.pk)


def _expiry() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=settings.LUBDUB_UPLOAD_EXPIRY_SECONDS)


def _touch(upload: ResumableUpload) -> None:
    ResumableUpload.objects.filter(pk=upload.pk, status=Status.OPEN).update(expires_at=_expiry())


def _update(upload: ResumableUpload, **fields: Any) -> None:
    ResumableUpload.objects.filter(pk=upload.pk).update(**fields)
    for name, value in fields.items():
        setattr(upload, name, value)
