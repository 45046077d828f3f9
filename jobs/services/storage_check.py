"""Which stored recordings have lost their audio object (``manage.py check_storage``)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from jobs import storage
from jobs.models import Recording

CHECKS_IN_FLIGHT = 8
PAGE = 500


@dataclass(frozen=True)
class MissingAudio:
    """A content address whose object is gone, and how many recording rows point at it."""

    sha256: str
    key: str
    rows: int
    example_path: str


def missing_audio() -> Iterator[MissingAudio]:
    """Every stored recording's object checked once per content address, a page at a time."""
    addresses = (
        Recording.objects.filter(status=Recording.Status.STORED).values_list("sha256", flat=True).distinct()
    )
    with ThreadPoolExecutor(max_workers=CHECKS_IN_FLIGHT, thread_name_prefix="check-storage") as pool:
        page: list[str] = []
        for sha256 in addresses.iterator(chunk_size=PAGE):
            page.append(sha256)
            if len(page) >= PAGE:
                yield from _check(pool, page)
                page = []
        yield from _check(pool, page)


def _check(pool: ThreadPoolExecutor, page: list[str]) -> Iterator[MissingAudio]:
    keys = [storage.recording_key(sha256) for sha256 in page]
    for sha256, key, present in zip(page, keys, pool.map(storage.exists, keys), strict=True):
        if not present:
            rows = Recording.objects.filter(sha256=sha256)
            yield MissingAudio(sha256, key, rows.count(), rows.values_list("path", flat=True).first() or "")
