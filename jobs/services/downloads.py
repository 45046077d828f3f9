"""Short-lived links to stored objects: presigned URLs on S3, signed tokens otherwise.

Objects are never public. A caller who may see an object gets a link that
works for LUBDUB_SIGNED_URL_SECONDS; on the filesystem backend the link points at
a view that checks the token's signature and age and streams the file.
"""

from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core import signing
from django.urls import reverse

from jobs import storage

SALT = "lubdub.download"


@dataclass(frozen=True)
class SignedObject:
    key: str
    filename: str
    content_type: str


def download_link(key: str, *, filename: str, content_type: str) -> str:
    """An absolute S3 URL, or a site-relative signed-token path on the filesystem backend."""
    url = storage.signed_url(key, filename=filename, content_type=content_type)
    if url:
        return url
    token = signing.dumps({"k": key, "f": filename, "t": content_type}, salt=SALT, compress=True)
    return reverse("api:signed-file", args=[token])


def resolve_token(token: str) -> SignedObject:
    """The object a token names; raises signing.BadSignature (or SignatureExpired)."""
    values = signing.loads(token, salt=SALT, max_age=settings.SIGNED_URL_SECONDS)
    return SignedObject(key=values["k"], filename=values["f"], content_type=values["t"])


def open_object(found: SignedObject) -> IO[bytes]:
    return storage.open_stream(found.key)
