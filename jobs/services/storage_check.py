"""Which stored recordings have lost their audio object (``manage.py check_storage``)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db.models import F, Max

from jobs import storage
from jobs.models import Recording

CHECKS_IN_FLIGHT = 8
PAGE = 500


@dataclass(frozen=True)
class MissingAudio:
    """An audio object (a pack, or one recording's own) that is gone or shorter than its rows say."""

    key: str
    rows: int
    example_path: str


def missing_audio() -> Iterator[MissingAudio]:
    """Every object stored recordings lie in, checked once (a HEAD) against the furthest byte a row needs."""
    objects = (
        Recording.objects.filter(status=Recording.Status.STORED)
        .exclude(storage_key="")
        .values("storage_key")
        .annotate(needed=Max(F("storage_offset") + F("size_bytes")))
        .order_by("storage_key")
        .values_list("storage_key", "needed")
    )
    with ThreadPoolExecutor(max_workers=CHECKS_IN_FLIGHT, thread_name_prefix="check-storage") as pool:
        page: list[tuple[str, int]] = []
        for found in objects.iterator(chunk_size=PAGE):
            page.append(found)
            if len(page) >= PAGE:
                yield from _check(pool, page)
                page = []
        yield from _check(pool, page)


def _check(pool: ThreadPoolExecutor, page: list[tuple[str, int]]) -> Iterator[MissingAudio]:
    sizes = pool.map(_size_or_none, [key for key, _ in page])
    for (key, needed), size in zip(page, sizes, strict=True):
        if size is None or size < needed:
            rows = Recording.objects.filter(storage_key=key)
            yield MissingAudio(key, rows.count(), rows.values_list("path", flat=True).first() or "")


def _size_or_none(key: str) -> int | None:
    try:
        return storage.size(key)
    except FileNotFoundError:
        return None
