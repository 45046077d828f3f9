"""Audio one batch stored and another refers to, kept while it may be deleted.

Ingest refers to audio any batch already stored (same SHA-256) instead of
storing it again. It looks that batch's row up when it reads the member, and
writes its own rows, which name the object, seconds or minutes later, once the
group's packs are written. The orphan sweep and a batch's deletion delete an
object once no row refers to it, and the other batch's rows can go in between
(deleted, moved to a pack, or a crash between the row and the object delete):
then nothing refers to the object until the new rows commit, and a deletion
checking at that moment would take audio those rows need. An object's age does
not help: the audio was stored long ago.

So both sides take a PostgreSQL advisory lock on the object's key. Ingest takes
it shared, in the transaction that writes its rows, and checks that a row still
refers to the object (else it may be gone, and the rows are not written); the
deletion takes it exclusive from its own check to the storage delete. Whichever
comes second sees what the first did: the deletion sees the committed rows, or
the ingest sees that no row refers to the object any more.
"""

import contextlib
import hashlib
from collections.abc import Collection, Sequence

from django.db import connection
from django.db.models import QuerySet

from jobs import storage
from jobs.models import Recording

LOCK_SPACE = 0x4C554244  # "LUBD": the first key of these advisory locks, apart from any other's


def lock_id(key: str) -> int:
    """The second key of `key`'s lock; two storage keys sharing one only wait for each other."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)


def _lock_ids(keys: Collection[str]) -> list[int]:
    # One order for every session: two holding several locks never wait for each other in a circle.
    return sorted({lock_id(key) for key in keys})


def keep_until_commit(placements: Collection[tuple[str, str]]) -> set[str]:
    """Lock the objects of `placements` (sha256, key) against deletion until the transaction ends.

    Call inside the transaction that writes rows naming them, before they are
    written; returns the keys at which no row holds that content any more: their
    object may have been deleted, and rows naming them must not be written.
    """
    if not placements:
        return set()
    keys = {key for _, key in placements}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, id) FROM unnest(%s::int[]) AS id",
            [LOCK_SPACE, _lock_ids(keys)],
        )
    # Through the sha256 index. A key still holding other content counts as gone
    # here: a needless retry at worst, never a lost recording.
    held = set(
        Recording.objects.filter(sha256__in={sha256 for sha256, _ in placements}, storage_key__in=keys)
        .values_list("sha256", "storage_key")
        .distinct()
    )
    return {key for sha256, key in placements if (sha256, key) not in held}


def referencing(keys: Collection[str]) -> QuerySet[Recording]:
    """The recordings whose audio lies in one of the objects at `keys`.

    Unordered, so that PostgreSQL reads them through the storage_key index
    rather than walking the primary key for the model's default order.
    """
    return Recording.objects.filter(storage_key__in=keys).order_by()


def delete_unreferenced(keys: Sequence[str]) -> list[str]:
    """Delete the objects at `keys` that no row refers to; returns the keys deleted.

    The keys' locks are held from the check to the storage deletes: session
    locks, outside any transaction, since the deletes are storage requests.
    """
    if not keys:
        return []
    ids = _lock_ids(keys)
    with connection.cursor() as cursor:
        try:
            # Inside the try: locks taken before a failure part way are released too.
            cursor.execute("SELECT pg_advisory_lock(%s, id) FROM unnest(%s::int[]) AS id", [LOCK_SPACE, ids])
            referenced = set(referencing(keys).values_list("storage_key", flat=True).distinct())
            deleted = []
            for key in dict.fromkeys(keys):
                if key in referenced:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    storage.delete(key)
                    deleted.append(key)
            return deleted
        finally:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s, id) FROM unnest(%s::int[]) AS id", [LOCK_SPACE, ids]
            )
