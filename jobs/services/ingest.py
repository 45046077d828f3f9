"""Ingest: turn an uploaded file in storage into Recording and Analysis rows.

An archive is read with a few requests whatever its size (jobs.services.zipstream:
its central directory from the end of the object, then its members in the order
they lie in it from one streamed read), one member at a time through a small
spool; each new recording is appended to a
pack object (jobs.services.packs: up to 128 recordings, one PUT), and audio any
batch already stored is referred to, not stored again. Rows are written a group
at a time, each group in one transaction once its audio is in storage, and its
analysis is queued when that commits: workers analyse the first recordings
while the rest of the archive is still being read. The batch's total is set from
the archive's listing before the first row, so its progress has a share from the
start that never goes back.
"""

import hashlib
import logging
import tempfile
import threading
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import storage
from jobs.models import Analysis, Batch, Recording
from jobs.services import archive, packs, patients, progress, queue, shared_audio, sniff, transient, zipstream

logger = logging.getLogger(__name__)

SPOOL_BYTES = 1024 * 1024
COPY_BLOCK = 64 * 1024
PACKS_IN_FLIGHT = 2  # packs written while the next one fills (each at most packs.PACK_BYTES)
CHECK_GROUP = 32  # members hashed before one "already stored?" query
ROW_GROUP_CHUNKS = 2  # analysis chunks' worth of members written per transaction


@dataclass
class Member:
    """What ingest learned about one file of the upload."""

    path: str
    sha256: str = ""
    size_bytes: int = 0
    error_code: str = ""
    error_message: str = ""
    label: str = ""
    patient_id: str = ""
    location: str = ""
    storage_key: str = ""
    storage_offset: int = 0
    shares: bool = False  # its audio is another row's (same SHA-256), not in a pack this ingest writes

    def describe(self, listed: archive.MemberFacts | None) -> None:
        """Take the ground truth, patient and location labels.csv (or the file's name) gives."""
        facts = patients.member_facts(self.path, listed)
        self.label, self.patient_id, self.location = facts.label, facts.patient_id, facts.location

    @property
    def stored(self) -> bool:
        return not self.error_code

    @property
    def row_path(self) -> str:
        """The path as the Recording row keeps it (its column holds 1,024 characters)."""
        return self.path[:1024]


class _TooLarge(Exception):
    pass


class SharedAudioGone(storage.StorageUnavailable):
    """Audio another batch stored, which this upload refers to, was deleted before its rows were
    written (jobs.services.shared_audio). Retried like a storage outage: the next run finds no row
    holding that audio and stores it anew."""

    def __init__(self, keys: set[str]) -> None:
        listed = ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else "")
        super().__init__(f"stored audio this upload refers to was deleted meanwhile ({listed})")


def claim_for_ingest(batch_id: UUID | str) -> Batch | None:
    """Move a batch into ingesting; None when it is already past that (or cancelled)."""
    claimed = Batch.objects.filter(
        pk=batch_id, status__in=[Batch.Status.PENDING, Batch.Status.INGESTING]
    ).update(status=Batch.Status.INGESTING, started_at=Coalesce(F("started_at"), timezone.now()))
    if not claimed:
        return None
    return Batch.objects.get(pk=batch_id)


def ingest_batch(batch_id: UUID | str, *, queue_analysis: bool = True) -> list[int]:
    """Ingest a pending batch; returns the ids of the analyses it created.

    Safe to run twice: a second run finds the batch past `ingesting` or its rows
    already written, and stores nothing twice (content-addressed keys).
    """
    batch = claim_for_ingest(batch_id)
    if batch is None:
        return []
    try:
        return _ingest(batch, queue_analysis=queue_analysis)
    except transient.DEPENDENCY_ERRORS:
        raise  # the task retries; the batch stays in `ingesting`
    except Exception as exc:
        # A bug must not leave the batch looking busy forever.
        fail_batch(batch, "ingest_error", f"The upload could not be read ({type(exc).__name__}: {exc}).")
        raise


def _ingest(batch: Batch, *, queue_analysis: bool) -> list[int]:
    rows = _Rows(batch, queue_analysis=queue_analysis)
    try:
        if sniff.is_zip(storage.read_head(batch.upload_key, sniff.HEAD_BYTES)):
            _read_archive(batch.upload_key, rows)
        else:
            with storage.open_from(batch.upload_key, 0) as upload:
                _read_single(batch, upload, rows)
    except archive.ArchiveRefused as exc:
        fail_batch(batch, exc.code, exc.message)
        return []
    if not rows.stopped:
        rows.write(final=True)
    _discard_upload(batch)
    return rows.analysis_ids


def fail_batch(batch: Batch, code: str, message: str) -> None:
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.INGESTING).update(
        status=Batch.Status.FAILED, error_code=code, error_message=message, finished_at=timezone.now()
    )


def _read_single(batch: Batch, upload: IO[bytes], rows: "_Rows") -> None:
    rows.expect(1)
    member = Member(path=batch.upload_name or "recording")
    if rows.written(member):
        return
    member.describe(None)
    with _Uploader() as uploader:
        _store(member, upload, uploader)
    rows.add(member)


def _read_archive(key: str, rows: "_Rows") -> None:
    try:
        directory = zipstream.Directory(key)
    except storage.StorageUnavailable:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise archive.ArchiveRefused(
            "not_a_zip", f"The upload is not a readable zip archive ({exc})."
        ) from exc
    with directory:
        plan = archive.plan(directory.zipped)
        # Labels first: each group of rows is final when it is written.
        labels, folder, problems = _read_labels(directory, plan)
        # Every member gets a row (labels.csv one only when it is refused): the total, known now.
        rows.expect(len(plan.rejected) + len(problems) + len(plan.accepted))
        for rejected in plan.rejected:
            rows.add(Member(rejected.path, error_code=rejected.code, error_message=rejected.message))
        for member in problems:
            rows.add(member)
        # In the order the members lie in the archive, from one streamed read that
        # starts at the first member an earlier delivery of this task did not store.
        todo = [
            (info, Member(path=archive.display_path(info, plan.root)))
            for info in sorted(plan.accepted, key=lambda info: info.header_offset)
        ]
        with _Uploader() as uploader, zipstream.Body(key, directory.size) as body:
            for info, member in todo:
                if rows.written(member):
                    continue
                listed = labels.get(member.path[len(folder) :]) if member.path.startswith(folder) else None
                member.describe(listed)
                _store_member(body, info, member, uploader)
                rows.add(member)
                if rows.full():
                    uploader.drain()  # every key a row names is in storage first
                    rows.write()
                    if rows.stopped:
                        return  # cancelled, failed, or finished by another delivery


def _store_member(body: zipstream.Body, info: zipfile.ZipInfo, member: Member, uploader: "_Uploader") -> None:
    try:
        with body.open(info) as source:
            _store(member, source, uploader)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        member.error_code, member.error_message = "corrupt", f"The member could not be extracted ({exc})."
    except NotImplementedError as exc:
        member.error_code, member.error_message = "unsupported_compression", str(exc)


def _store(member: Member, source: IO[bytes], uploader: "_Uploader") -> None:
    """Hash and sniff the file while spooling it, then upload it once."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed by the uploader
    try:
        member.sha256, member.size_bytes, head = _spool(source, spool)
    except _TooLarge:
        spool.close()
        limit = settings.LUBDUB_MAX_MEMBER_BYTES
        member.error_code, member.error_message = "too_large", f"The file is larger than {limit} bytes."
        return
    problem = _content_problem(head, member.size_bytes)
    if problem:
        spool.close()
        member.error_code, member.error_message = problem
        return
    uploader.put_once(member, spool)


def _spool(source: IO[bytes], spool: IO[bytes]) -> tuple[str, int, bytes]:
    digest, size, head = hashlib.sha256(), 0, b""
    limit = settings.LUBDUB_MAX_MEMBER_BYTES
    while block := source.read(COPY_BLOCK):
        if not head:
            head = block[: sniff.HEAD_BYTES]
        size += len(block)
        if size > limit:
            raise _TooLarge
        digest.update(block)
        spool.write(block)
    spool.seek(0)
    return digest.hexdigest(), size, head


def _content_problem(head: bytes, size: int) -> tuple[str, str] | None:
    if size == 0:
        return "empty", "The file is empty (0 bytes)."
    if sniff.is_zip(head):
        return "nested_archive", "Archives inside archives are not opened; upload them separately."
    if not sniff.looks_like_audio(head):
        return "not_audio", "The file is not a recognised audio format (WAV, FLAC, OGG, AIFF, MP3)."
    return None


def _read_labels(
    directory: zipstream.Directory, plan: archive.Plan
) -> tuple[dict[str, archive.MemberFacts], str, list[Member]]:
    """labels.csv's facts by path, the folder it applies to, and a member row if it is malformed."""
    info = plan.labels_member
    if info is None:
        return {}, "", []
    folder = archive.labels_folder(info, plan.root)
    if info.file_size > archive.MAX_LABELS_BYTES:
        problem = Member(
            archive.LABELS_FILE, error_code="malformed_labels", error_message="labels.csv is too large"
        )
        return {}, folder, [problem]
    try:
        data = directory.read(info, limit=2 * archive.MAX_LABELS_BYTES)
        return archive.parse_manifest(data), folder, []
    except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
        problem = Member(folder + archive.LABELS_FILE, error_code="malformed_labels", error_message=str(exc))
        return {}, folder, [problem]


class _Rows:
    """Writes Recording and Analysis rows a group at a time and queues their analysis.

    Safe to run twice: paths already written for the batch (by an earlier or a
    concurrent delivery) are skipped under the batch's row lock, and nothing is
    written once the batch has left `ingesting`.
    """

    def __init__(self, batch: Batch, *, queue_analysis: bool) -> None:
        self.batch = batch
        self.queue_analysis = queue_analysis
        self.group_size = settings.LUBDUB_ANALYSIS_CHUNK * ROW_GROUP_CHUNKS
        self._written = set(Recording.objects.filter(batch=batch).values_list("path", flat=True))
        self._waiting: list[Member] = []
        self.analysis_ids: list[int] = []
        self.stopped = False

    def written(self, member: "Member") -> bool:
        return member.row_path in self._written

    def expect(self, total: int) -> None:
        """Say how many rows the upload makes before any is written, so progress has its total."""
        Batch.objects.filter(pk=self.batch.pk, status=Batch.Status.INGESTING).update(expected_total=total)

    def add(self, member: Member) -> None:
        self._waiting.append(member)

    def full(self) -> bool:
        return len(self._waiting) >= self.group_size

    def write(self, *, final: bool = False) -> None:
        """Write the waiting members; the final write moves the batch on to `analysing`."""
        members, self._waiting = self._waiting, []
        batch = self.batch
        with transaction.atomic():
            locked = Batch.objects.select_for_update().get(pk=batch.pk)
            if locked.status != Batch.Status.INGESTING:
                self.stopped = True
                return
            paths = [member.row_path for member in members]
            taken = set(Recording.objects.filter(batch=batch, path__in=paths).values_list("path", flat=True))
            new = [member for member in members if member.row_path not in taken]
            # Until this commits, no sweep or batch deletion removes what the rows share.
            gone = shared_audio.keep_until_commit(
                {(member.sha256, member.storage_key) for member in new if member.stored and member.shares}
            )
            if gone:
                logger.warning(
                    "batch %s: audio it shares was deleted meanwhile (%s); ingest again", batch.pk, gone
                )
                raise SharedAudioGone(gone)
            recordings = Recording.objects.bulk_create(
                [_recording_row(batch, m) for m in new], batch_size=2000
            )
            stored = [row for row in recordings if row.status == Recording.Status.STORED]
            analyses = Analysis.objects.bulk_create(
                [Analysis(batch=batch, recording=row) for row in stored], batch_size=2000
            )
            changes: dict[str, Any] = {
                "total_count": F("total_count") + len(recordings),
                "rejected_count": F("rejected_count") + len(recordings) - len(stored),
                "pending_count": F("pending_count") + len(analyses),
            }
            if final:
                changes["status"] = Batch.Status.ANALYSING
            Batch.objects.filter(pk=batch.pk).update(**changes)
            ids = [analysis.pk for analysis in analyses]
            if self.queue_analysis and ids:
                queue.send_analysis(batch, ids, chunk_size=settings.LUBDUB_ANALYSIS_CHUNK)
            if final:
                progress.finalise_if_done(batch.pk)
        self._written.update(row.path for row in recordings)
        self.analysis_ids += ids


def _recording_row(batch: Batch, member: Member) -> Recording:
    return Recording(
        batch=batch,
        organisation_id=batch.organisation_id,
        path=member.row_path,
        status=Recording.Status.STORED if member.stored else Recording.Status.REJECTED,
        storage_key=member.storage_key if member.stored else "",
        storage_offset=member.storage_offset if member.stored else 0,
        sha256=member.sha256,
        size_bytes=member.size_bytes,
        label=member.label,
        patient_id=member.patient_id,
        location=member.location,
        error_code=member.error_code,
        error_message=member.error_message,
    )


def _discard_upload(batch: Batch) -> None:
    """The recordings are in packs now; the uploaded file is redundant."""
    try:
        storage.delete(batch.upload_key)
    except storage.StorageUnavailable:
        logger.warning("could not delete upload %s; it stays until the batch is deleted", batch.upload_key)


class _Uploader:
    """Packs new audio and writes each pack in a thread; each content is stored once.

    Members are checked against stored recordings in groups (one query per
    group): audio some batch already stored is referred to (its row's span)
    while its object is there, and packed again when it is not, the rows that
    pointed at the lost object then moved to the new copy.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PACKS_IN_FLIGHT, thread_name_prefix="ingest-put")
        self._slots = threading.BoundedSemaphore(PACKS_IN_FLIGHT)  # bounds the packs held in memory
        self._pack = packs.Pack()
        self._placed: dict[str, tuple[str, int]] = {}  # sha256 -> (key, offset) for this upload
        self._shared: set[str] = set()  # sha256 placed at another row's span, not in a pack of ours
        self._group: list[tuple[Member, IO[bytes]]] = []
        self._followers: list[Member] = []  # same content as a member still in the group
        self._present: dict[str, bool] = {}  # object key -> it exists (asked once per ingest)
        self._restored: list[tuple[str, str]] = []  # (sha256, lost key) to point at the new copy
        self._futures: list[Future[int]] = []

    def __enter__(self) -> "_Uploader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.drain()
        for _, spool in self._group:
            spool.close()
        self._pool.shutdown(wait=True)

    def drain(self) -> None:
        """Until every member handed over so far has its place in storage."""
        self._flush()
        self._send()
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()  # re-raise a storage failure so the task retries
        self._move_restored()

    def put_once(self, member: Member, spool: IO[bytes]) -> None:
        if member.sha256 in self._placed or any(member.sha256 == m.sha256 for m, _ in self._group):
            spool.close()
            self._followers.append(member)
            if member.sha256 in self._placed:
                self._place_followers()
            return
        self._group.append((member, spool))
        if len(self._group) >= CHECK_GROUP:
            self._flush()

    def _flush(self) -> None:
        group, self._group = self._group, []
        # Any one row per content will do: a lost object is noticed below and replaced.
        spans = {
            sha256: (key, offset)
            for sha256, key, offset in Recording.objects.filter(
                sha256__in=[member.sha256 for member, _ in group], status=Recording.Status.STORED
            )
            .exclude(storage_key="")
            .values_list("sha256", "storage_key", "storage_offset")
        }
        for member, spool in group:
            found = spans.get(member.sha256)
            if found and self._exists(found[0]):
                spool.close()
                self._placed[member.sha256] = found
                self._shared.add(member.sha256)
            else:
                if found:
                    # A row saying "stored" is not proof: objects can be lost (a bucket
                    # emptied, a restore from an older backup); this upload brings them back.
                    logger.warning("restoring lost audio object %s from a new upload", found[0])
                    self._restored.append((member.sha256, found[0]))
                self._add(member, spool)
            self._place(member)
        self._place_followers()

    def _exists(self, key: str) -> bool:
        if key not in self._present:
            self._present[key] = storage.exists(key)
        return self._present[key]

    def _add(self, member: Member, spool: IO[bytes]) -> None:
        try:
            audio = spool.read()
        finally:
            spool.close()
        if not self._pack.fits(len(audio)):
            self._send()
        span = self._pack.add(audio)
        self._placed[member.sha256] = (span.key, span.offset)

    def _send(self) -> None:
        """Write the current pack in a thread (waiting while PACKS_IN_FLIGHT are being written)."""
        pack, self._pack = self._pack, packs.Pack()
        if not pack.count:
            return
        self._slots.acquire()
        future = self._pool.submit(pack.write)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _place_followers(self) -> None:
        waiting, self._followers = self._followers, []
        for member in waiting:
            if member.sha256 in self._placed:
                self._place(member)
            else:
                self._followers.append(member)

    def _place(self, member: Member) -> None:
        member.storage_key, member.storage_offset = self._placed[member.sha256]
        member.shares = member.sha256 in self._shared

    def _move_restored(self) -> None:
        """Rows of other batches that pointed at a lost object now point at this upload's copy."""
        restored, self._restored = self._restored, []
        for sha256, lost_key in restored:
            key, offset = self._placed[sha256]
            Recording.objects.filter(sha256=sha256, storage_key=lost_key).update(
                storage_key=key, storage_offset=offset
            )
