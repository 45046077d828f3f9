"""Move recordings stored the old way, one object each, into packs (``manage.py pack_recordings``)."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import transaction

from jobs import storage
from jobs.models import Recording
from jobs.services import packs

LEGACY_FOLDER = "recordings/"
READS_IN_FLIGHT = 8


@dataclass
class Repacked:
    rows: int = 0
    packs: int = 0
    missing: set[str] = field(default_factory=set)  # legacy objects that are gone (check_storage lists them)


def pack_legacy_recordings() -> Repacked:
    """Every recording row still naming a `recordings/<sha256>` object is moved into a pack.

    A pack's worth of objects at a time: read them, write the pack (one PUT),
    then point the rows at their spans in one transaction. The old objects are
    left for `sweep_storage`, which deletes them once no row refers to them: a
    crash at any step leaves either an unreferenced pack or unreferenced old
    objects, never a row without its audio. Safe to run again.
    """
    done = Repacked()
    while keys := _next_keys(done.missing):
        pack = packs.Pack()
        with ThreadPoolExecutor(max_workers=READS_IN_FLIGHT, thread_name_prefix="repack") as pool:
            audio = list(pool.map(_read_or_none, keys))
        placed: dict[str, packs.Span] = {}
        for key, data in zip(keys, audio, strict=True):
            if data is None:
                done.missing.add(key)
            elif pack.fits(len(data)):
                placed[key] = pack.add(data)
        if placed:
            pack.write()
            done.packs += 1
            done.rows += _point_rows_at(placed)
    return done


def _next_keys(missing: set[str]) -> list[str]:
    return list(
        Recording.objects.filter(status=Recording.Status.STORED, storage_key__startswith=LEGACY_FOLDER)
        .exclude(storage_key__in=missing)
        .order_by("storage_key")
        .values_list("storage_key", flat=True)
        .distinct()[: packs.PACK_RECORDINGS]
    )


def _read_or_none(key: str) -> bytes | None:
    try:
        return storage.read_bytes(key)
    except FileNotFoundError:
        return None


def _point_rows_at(placed: dict[str, packs.Span]) -> int:
    moved = 0
    with transaction.atomic():
        for key, span in placed.items():
            moved += Recording.objects.filter(storage_key=key).update(
                storage_key=span.key, storage_offset=span.offset, size_bytes=span.length
            )
    return moved
