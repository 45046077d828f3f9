"""Short-lived links to stored objects: presigned URLs on S3, signed tokens otherwise.

Objects are never public. A caller who may see an object gets a link that
works for LUBDUB_SIGNED_URL_SECONDS; on the filesystem backend the link points at
a view that checks the token's signature and age and streams the file.
"""

import io
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core import signing
from django.urls import reverse

from jobs import storage
from jobs.models import Recording

SALT = "lubdub.download"


@dataclass(frozen=True)
class SignedObject:
    key: str
    filename: str
    content_type: str
    offset: int = 0
    length: int | None = None  # None: the whole object


def download_link(
    key: str, *, filename: str, content_type: str, offset: int = 0, length: int | None = None
) -> str:
    """An absolute S3 URL, or a site-relative signed-token path on the filesystem backend.

    A span of an object (`length` bytes from `offset`: a recording in a pack)
    is always served through the signed-token view: a presigned S3 link would
    hand over the whole object, other recordings included.
    """
    if length is None:
        url = storage.signed_url(key, filename=filename, content_type=content_type)
        if url:
            return url
    values: dict[str, str | int] = {"k": key, "f": filename, "t": content_type}
    if length is not None:
        values.update(o=offset, l=length)
    token = signing.dumps(values, salt=SALT, compress=True)
    return reverse("api:signed-file", args=[token])


def audio_span(recording: Recording) -> dict[str, int]:
    """download_link's span for a recording in a pack; nothing for one with an object of its own."""
    if not storage.is_pack_key(recording.storage_key):
        return {}
    return {"offset": recording.storage_offset, "length": recording.size_bytes}


def resolve_token(token: str) -> SignedObject:
    """The object a token names; raises signing.BadSignature (or SignatureExpired)."""
    values = signing.loads(token, salt=SALT, max_age=settings.SIGNED_URL_SECONDS)
    return SignedObject(
        key=values["k"],
        filename=values["f"],
        content_type=values["t"],
        offset=values.get("o", 0),
        length=values.get("l"),
    )


def open_object(found: SignedObject) -> IO[bytes]:
    if found.length is None:
        return storage.open_stream(found.key)
    return io.BytesIO(storage.read_range(found.key, found.offset, found.length))  # one recording
