"""Accepting an upload: one recording or a zip, already streamed to a local file.

The request body arrives on disk (Django's temporary upload file), goes to
storage under `uploads/<batch id>/`, and only then is the Batch row written and
the ingest task queued after commit. No archive is ever held in memory.
"""

import contextlib
from dataclasses import dataclass
from typing import IO
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from jobs import storage
from jobs.models import Batch, ModelVersion, Organisation, Site
from jobs.services import access, queue, sites, sniff, webhooks
from jobs.services.model_lookup import UnknownModel, resolve_model
from jobs.services.refusals import Refused


class UploadRejected(Refused):
    """An upload the platform refuses as a whole."""


def check_declared_size(content_length: int | str | None, *, transfer_encoding: str = "") -> None:
    """Refuse a too-large body before reading it, and a chunked one.

    ``content_length`` may be the raw ``Content-Length`` header; a missing or
    malformed one is left to the limit checked while the body streams. Django
    reads a body by its declared length, so a chunked body (which declares
    none) would be read as empty and refused with a misleading "no file".
    """
    if transfer_encoding:
        raise UploadRejected(
            "length_required",
            "Send the upload with a Content-Length header; chunked request bodies are not supported.",
            status=411,
        )
    if isinstance(content_length, str):
        content_length = int(content_length) if content_length.isdigit() else None
    limit = settings.LUBDUB_MAX_UPLOAD_BYTES
    # The multipart envelope adds a little around the file itself.
    if content_length is not None and content_length > limit + 64 * 1024:
        raise UploadRejected(
            "too_large", f"The upload is {content_length} bytes; the limit is {limit} bytes.", status=413
        )


IDEMPOTENCY_KEY_LENGTH = 255


def idempotency_key(header: str | None) -> str:
    """The client's Idempotency-Key header, checked; "" when none was sent."""
    key = (header or "").strip()
    if len(key) > IDEMPOTENCY_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise UploadRejected(
            "bad_idempotency_key",
            f"Idempotency-Key must be printable ASCII of at most {IDEMPOTENCY_KEY_LENGTH} characters.",
        )
    return key


def retried_batch(user: User | None, key: str) -> Batch | None:
    """The batch an earlier request with this Idempotency-Key created, if any."""
    if not key or not getattr(user, "is_authenticated", False):
        return None
    return Batch.objects.filter(created_by=user, idempotency_key=key).first()


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


@dataclass(frozen=True)
class UploadOptions:
    """What an upload asks for, as sent: the batch's name, a model version reference, a
    priority, a site id or name and a webhook URL (empty or None: the defaults)."""

    name: str = ""
    model: str | ModelVersion | None = None
    priority: str | None = None
    site: str | Site | None = None
    webhook_url: str = ""


DEFAULT_OPTIONS = UploadOptions()


def create_batch_from_upload(
    *,
    user: User,
    organisation: Organisation,
    upload: IO[bytes],
    filename: str,
    options: UploadOptions = DEFAULT_OPTIONS,
    idempotency_key: str = "",
) -> Batch:
    """Store the uploaded file and create its batch; ingest starts after commit.

    ``options.model`` is a version reference the user may see, or none for the organisation's
    default model (its own, else the global one); a version of another
    organisation that staff have not published is answered like an unknown one.
    ``options.site`` is a site id or name of the organisation; none named means its default site.
    ``options.webhook_url`` is posted the summary when the batch finishes; none: the
    organisation's default webhook, if it has one.
    With an ``idempotency_key`` the caller already used (see `retried_batch`), the
    earlier batch is returned and nothing new is kept.
    """
    size = _size_of(upload)
    head = upload.read(sniff.HEAD_BYTES)
    upload.seek(0)
    batch = new_batch(
        user=user,
        organisation=organisation,
        filename=filename,
        size=size,
        head=head,
        options=options,
        idempotency_key=idempotency_key,
    )
    # The slow copy happens before the transaction, never inside it.
    storage.put(batch.upload_key, upload)
    return save_batch(batch)


@dataclass(frozen=True)
class BatchOptions:
    """What an upload asked for, checked: its model version, site, webhook URL and priority."""

    model_version: ModelVersion
    site: Site | None
    webhook_url: str
    priority: str | None


def batch_options(*, user: User, organisation: Organisation, options: UploadOptions) -> BatchOptions:
    """An upload's options checked (all but the name); UploadRejected names the first refused."""
    if options.priority and options.priority not in Batch.Priority.values:
        raise UploadRejected("bad_priority", f"priority must be one of {', '.join(Batch.Priority.values)}")
    model_version = _model_for(user, organisation, options.model)
    try:
        batch_site = sites.resolve_site(organisation, options.site)
    except sites.SiteRefused as exc:
        raise UploadRejected(exc.code, exc.message) from exc
    try:
        batch_webhook = webhooks.batch_url(organisation, options.webhook_url)
    except webhooks.WebhookRefused as exc:
        raise UploadRejected(exc.code, exc.message) from exc
    return BatchOptions(model_version, batch_site, batch_webhook, options.priority or None)


def check_size(size: int) -> None:
    """Refuse an empty upload and one over LUBDUB_MAX_UPLOAD_BYTES."""
    if size == 0:
        raise UploadRejected("empty", "The uploaded file is empty.")
    if size > settings.LUBDUB_MAX_UPLOAD_BYTES:
        limit = settings.LUBDUB_MAX_UPLOAD_BYTES
        raise UploadRejected("too_large", f"The upload is {size} bytes; the limit is {limit}.", status=413)


def new_batch(
    *,
    user: User,
    organisation: Organisation,
    filename: str,
    size: int,
    head: bytes,
    options: UploadOptions = DEFAULT_OPTIONS,
    idempotency_key: str = "",
    batch_id: UUID | None = None,
) -> Batch:
    """The batch of an upload of ``size`` bytes starting with ``head``, checked and not yet saved.

    Its `upload_key` is where the upload is to be stored (``batch_id`` chooses
    the batch's id, and so that key, ahead: a resumable upload stores its parts
    there before the batch exists).
    """
    check_size(size)
    kind_priority = upload_kind(head, filename)
    checked = batch_options(user=user, organisation=organisation, options=options)
    batch = Batch(
        organisation=organisation,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        name=options.name[:200] or filename[:200],
        priority=checked.priority or kind_priority,
        model_version=checked.model_version,
        site=checked.site,
        upload_name=filename[:255],
        upload_size=size,
        idempotency_key=idempotency_key,
        webhook_url=checked.webhook_url,
    )
    if batch_id is not None:
        batch.id = batch_id
    batch.upload_key = storage.upload_key(batch.id, filename)
    return batch


def save_batch(batch: Batch) -> Batch:
    """Save a batch whose upload is stored and queue its ingest after commit.

    A retry that raced the request it repeats (same Idempotency-Key) and lost is
    answered with the first batch, and its own upload object is deleted.
    """
    try:
        with transaction.atomic():
            batch.save()
            queue.send_ingest(batch)
    except IntegrityError:
        earlier = retried_batch(batch.created_by, batch.idempotency_key)
        if earlier is None:
            raise
        with contextlib.suppress(OSError):  # best effort: an orphan upload object only costs space
            storage.delete(batch.upload_key)
        return earlier
    return batch


def _model_for(user: User, organisation: Organisation, model: str | ModelVersion | None) -> ModelVersion:
    usable = access.visible_models(user) & access.usable_models(organisation)
    try:
        if isinstance(model, ModelVersion):
            if not usable.filter(pk=model.pk).exists():
                raise UnknownModel(f"No active model version called {model.slug!r}")
            return model
        return resolve_model(model, among=usable, organisation=organisation)
    except UnknownModel as exc:
        raise UploadRejected("unknown_model", str(exc)) from exc


def _size_of(upload: IO[bytes]) -> int:
    upload.seek(0, 2)
    size = upload.tell()
    upload.seek(0)
    return size
