"""Accepting an upload: one recording or a zip, already streamed to a local file.

The request body arrives on disk (Django's temporary upload file), goes to
storage under `uploads/<batch id>/`, and only then is the Batch row written and
the ingest task queued after commit. No archive is ever held in memory.
"""

from typing import IO, Any

from django.conf import settings
from django.db import transaction

from jobs import storage
from jobs.models import Batch, ModelVersion, Organisation, Site
from jobs.services import queue, sites, sniff
from jobs.services.registry import UnknownModel, resolve_model


class UploadRejected(ValueError):
    """A request the platform refuses as a whole; `status` is the HTTP status to answer."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def check_declared_size(content_length: int | str | None) -> None:
    """Refuse a too-large body before reading it.

    ``content_length`` may be the raw ``Content-Length`` header; a missing or
    malformed one is left to the limit checked while the body streams.
    """
    if isinstance(content_length, str):
        content_length = int(content_length) if content_length.isdigit() else None
    limit = settings.LUBDUB_MAX_UPLOAD_BYTES
    # The multipart envelope adds a little around the file itself.
    if content_length is not None and content_length > limit + 64 * 1024:
        raise UploadRejected(
            "too_large", f"The upload is {content_length} bytes; the limit is {limit} bytes.", status=413
        )


def upload_kind(head: bytes, filename: str) -> Batch.Priority:
    """Bulk for archives, interactive for a single recording; anything else is refused."""
    if sniff.is_zip(head) or filename.lower().endswith(".zip"):
        return Batch.Priority.BULK
    if sniff.looks_like_audio(head):
        return Batch.Priority.INTERACTIVE
    raise UploadRejected(
        "unsupported_type",
        "The file is neither a zip archive nor a recognised audio file (WAV, FLAC, OGG, AIFF, MP3).",
        status=415,
    )


def create_batch_from_upload(
    *,
    user: Any,
    organisation: Organisation,
    upload: IO[bytes],
    filename: str,
    name: str = "",
    model: str | ModelVersion | None = None,
    priority: str | None = None,
    site: str | Site | None = None,
) -> Batch:
    """Store the uploaded file and create its batch; ingest starts after commit.

    ``site`` is a site id or name of the organisation; none named means its default site.
    """
    size = _size_of(upload)
    if size == 0:
        raise UploadRejected("empty", "The uploaded file is empty.")
    if size > settings.LUBDUB_MAX_UPLOAD_BYTES:
        limit = settings.LUBDUB_MAX_UPLOAD_BYTES
        raise UploadRejected("too_large", f"The upload is {size} bytes; the limit is {limit}.", status=413)
    head = upload.read(sniff.HEAD_BYTES)
    upload.seek(0)
    kind_priority = upload_kind(head, filename)
    if priority and priority not in Batch.Priority.values:
        raise UploadRejected("bad_priority", f"priority must be one of {', '.join(Batch.Priority.values)}")
    try:
        model_version = model if isinstance(model, ModelVersion) else resolve_model(model)
    except UnknownModel as exc:
        raise UploadRejected("unknown_model", str(exc)) from exc
    try:
        batch_site = sites.resolve_site(organisation, site)
    except sites.SiteRefused as exc:
        raise UploadRejected(exc.code, exc.message) from exc

    batch = Batch(
        organisation=organisation,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        name=name[:200] or filename[:200],
        priority=priority or kind_priority,
        model_version=model_version,
        site=batch_site,
        upload_name=filename[:255],
        upload_size=size,
    )
    batch.upload_key = storage.upload_key(batch.id, filename)
    # The slow copy happens before the transaction, never inside it.
    storage.put(batch.upload_key, upload)
    with transaction.atomic():
        batch.save()
        queue.send_ingest(batch)
    return batch


def _size_of(upload: IO[bytes]) -> int:
    upload.seek(0, 2)
    size = upload.tell()
    upload.seek(0)
    return size
