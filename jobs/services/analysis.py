"""Analyse a chunk of recordings: claim, fetch, classify, write, count.

The classifier itself is handed in by the worker (it owns TensorFlow and audio
decoding); everything here is database and storage work, done in bulk.
"""

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from jobs.models import Analysis, Batch, ModelVersion, Prediction, Recording
from jobs.services import packs, progress, sites, transient

logger = logging.getLogger(__name__)

FETCH_THREADS = 8
# Recordings classified per call while the rest of the chunk is still being read:
# small enough to overlap with storage, large enough to fill batched inference.
CLASSIFY_GROUP = 16
Status = Analysis.Status


@dataclass(frozen=True)
class Claim:
    analysis_id: int
    recording_id: int
    attempts: int
    storage_key: str
    sha256: str
    storage_offset: int = 0
    size_bytes: int = 0

    @property
    def span(self) -> packs.Span:
        return packs.span_of(self.storage_key, self.storage_offset, self.size_bytes)


@dataclass
class Result:
    """One recording's outcome: a classification (Classification.to_dict()) or an error."""

    claim: Claim
    classification: dict[str, Any] | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    error_code: str = ""
    error_message: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        if self.skipped:
            return Status.SKIPPED
        return Status.DONE if self.classification is not None else Status.FAILED


@dataclass(frozen=True)
class Fetched:
    claim: Claim
    audio: bytes


Classifier = Callable[[ModelVersion, list[Fetched]], list[Result]]
RunReader = Callable[[packs.Run, Sequence[packs.Span]], dict[int, bytes | None]]


@dataclass
class ChunkSummary:
    claimed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    finalised: bool = False


def analyse_chunk(batch_id: UUID | str, analysis_ids: Sequence[int], *, classify: Classifier) -> ChunkSummary:
    """Run one chunk. Safe to run twice: rows are claimed and finished conditionally."""
    batch = Batch.objects.select_related("model_version").filter(pk=batch_id).first()
    if batch is None or batch.status not in (Batch.Status.INGESTING, Batch.Status.ANALYSING):
        return ChunkSummary()  # deleted, cancelled or already finished (ingest may still be reading)
    claims = claim_pending(batch.pk, analysis_ids)
    if not claims:
        return ChunkSummary()
    with renewing(claims, every=settings.LUBDUB_CLAIM_HEARTBEAT_SECONDS):
        try:
            results, to_fetch = _already_predicted(batch, claims)
            for fetched, missing in fetch_in_groups(to_fetch):
                results += missing
                results += classify(batch.model_version, fetched) if fetched else []
        except transient.DEPENDENCY_ERRORS:
            release_for_retry(claims)  # transient: the task retries with backoff
            raise
        except Exception as exc:
            # A bug or a broken model must not leave the batch hanging forever.
            _fail_all(batch, claims, code="analysis_error", message=f"{type(exc).__name__}: {exc}")
            raise
        try:
            return record_results(batch, results)
        except transient.DATABASE_ERRORS:
            # Rolled back, nothing kept (a commit that went through leaves nothing to release).
            release_for_retry(claims)
            raise


def claim_pending(batch_id: UUID | str, analysis_ids: Sequence[int]) -> list[Claim]:
    """Claim the still-pending analyses of the chunk with one conditional UPDATE."""
    sql = f"""
        UPDATE {Analysis._meta.db_table} AS a
        SET status = %s, claimed_at = now(), attempts = a.attempts + 1
        FROM {Recording._meta.db_table} AS r
        WHERE a.id = ANY(%s) AND a.batch_id = %s AND a.status = %s AND r.id = a.recording_id
        RETURNING a.id, a.recording_id, a.attempts, r.storage_key, r.sha256, r.storage_offset, r.size_bytes
    """  # noqa: S608 - table names only, values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [Status.RUNNING, list(analysis_ids), batch_id, Status.PENDING])
        rows = cursor.fetchall()
    return sorted((Claim(*row) for row in rows), key=lambda claim: claim.analysis_id)


def renew(claims: Sequence[Claim]) -> int:
    """Mark the claims as still held (now); returns how many were renewed.

    Rows locked by the chunk's own final write are skipped instead of waited
    for: they are being finished, and waiting could deadlock with that write.
    A claim taken over by another delivery (attempts moved on) is not ours.
    """
    sql = f"""
        UPDATE {Analysis._meta.db_table} SET claimed_at = now()
        WHERE id IN (
            SELECT a.id FROM {Analysis._meta.db_table} AS a
            JOIN unnest(%s::bigint[], %s::integer[]) AS v(id, attempts)
                ON a.id = v.id AND a.attempts = v.attempts
            WHERE a.status = %s
            FOR UPDATE OF a SKIP LOCKED
        )
    """  # noqa: S608 - table name only
    ids = [claim.analysis_id for claim in claims]
    attempts = [claim.attempts for claim in claims]
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids, attempts, Status.RUNNING])
        return int(cursor.rowcount)


@contextmanager
def renewing(claims: Sequence[Claim], *, every: float) -> Iterator[None]:
    """Renew the claims every `every` seconds while the block runs: the heartbeat of
    the worker holding them.

    The sweeper re-queues claims not renewed for LUBDUB_CLAIM_LEASE_SECONDS, so a
    killed worker's recordings go back to the queue within about a minute, while
    a slow chunk on a live worker keeps its claims however long it takes.
    """
    stop = threading.Event()
    beat = threading.Thread(
        target=_renew_until, args=(claims, every, stop), name="claim-heartbeat", daemon=True
    )
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()


def _renew_until(claims: Sequence[Claim], every: float, stop: threading.Event) -> None:
    try:
        while not stop.wait(every):
            try:
                renew(claims)
            except transient.DATABASE_ERRORS:
                # The database is away: the chunk's own writes will fail too and
                # retry; try again on the next beat with a new connection.
                logger.warning("could not renew %d claims", len(claims), exc_info=True)
                connection.close()
    finally:
        connection.close()  # this thread's own connection; nothing else would close it


def release(claims: Sequence[Claim]) -> int:
    """Give claims back to the queue (a transient failure before anything was written)."""
    return _update_claimed(claims, status=Status.PENDING, code="", message="", finished=False)


def release_for_retry(claims: Sequence[Claim]) -> None:
    """Give the claims back before the task retries, so that the retry claims them again.

    With the database away altogether this fails too; the claims are then no
    longer renewed, and the sweeper queues them again once their lease is out.
    """
    try:
        release(claims)
    except transient.DATABASE_ERRORS:
        logger.warning("could not release %d claims; the sweeper will", len(claims), exc_info=True)


def fetch_in_groups(
    claims: Sequence[Claim], *, group: int = CLASSIFY_GROUP, read_run: RunReader = packs.read_run
) -> Iterator[tuple[list[Fetched], list[Result]]]:
    """The chunk's audio, read concurrently and handed over a group at a time, in order.

    Recordings that lie near each other in one object (a pack) are read with
    one ranged GET (packs.runs). Every read starts at once; while the caller
    classifies one group, the reads of the next ones go on in the background,
    so waiting for storage and computing overlap instead of taking turns.
    """
    spans = [claim.span for claim in claims]
    pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fetch")
    try:
        reading: dict[int, Future[dict[int, bytes | None]]] = {}
        for run in packs.runs(spans):
            future = pool.submit(read_run, run, spans)
            reading.update(dict.fromkeys(run.members, future))
        for start in range(0, len(claims), group):
            fetched, missing = [], []
            for index in range(start, min(start + group, len(claims))):
                audio = reading[index].result()[index]
                if audio is None:
                    missing.append(
                        Result(
                            claims[index],
                            error_code="missing_audio",
                            error_message="The stored audio is gone.",
                        )
                    )
                else:
                    fetched.append(Fetched(claims[index], audio))
            yield fetched, missing
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def record_results(batch: Batch, results: Sequence[Result]) -> ChunkSummary:
    """Write predictions, recording facts, analysis states and counters in one transaction."""
    summary = ChunkSummary(claimed=len(results))
    with transaction.atomic():
        Prediction.objects.bulk_create(_predictions(batch, results), ignore_conflicts=True)
        _save_audio_facts(results)
        finished = _finish(results)
        summary.counts = Counter(finished)
        if finished:
            Batch.objects.filter(pk=batch.pk).update(
                pending_count=F("pending_count") - len(finished),
                done_count=F("done_count") + summary.counts[Status.DONE],
                failed_count=F("failed_count") + summary.counts[Status.FAILED],
                skipped_count=F("skipped_count") + summary.counts[Status.SKIPPED],
            )
            summary.finalised = progress.finalise_if_done(batch.pk)
    return summary


def _already_predicted(batch: Batch, claims: list[Claim]) -> tuple[list[Result], list[Claim]]:
    """Recordings this model version has already read are skipped, not recomputed."""
    done = set(
        Prediction.objects.filter(
            recording_id__in=[claim.recording_id for claim in claims], model_version=batch.model_version_id
        ).values_list("recording_id", flat=True)
    )
    skipped = [Result(claim, skipped=True) for claim in claims if claim.recording_id in done]
    return skipped, [claim for claim in claims if claim.recording_id not in done]


def _predictions(batch: Batch, results: Sequence[Result]) -> list[Prediction]:
    version = batch.model_version
    rows = []
    for result in results:
        found = result.classification
        if found is None or result.skipped:
            continue
        rows.append(
            Prediction(
                recording_id=result.claim.recording_id,
                model_version=version,
                batch=batch,
                label=found["label"],
                decision=found.get("decision", ""),
                decision_reasons=found.get("decision_reasons", []),
                probabilities=found["probabilities"],
                raw_probability=found.get("raw_probability"),
                confidence=found["confidence"],
                timeline=found.get("timeline", []),
                quality=found.get("quality", ""),
                quality_reasons=found.get("quality_reasons", []),
                heart_rate_bpm=found.get("heart_rate_bpm"),
                segments=found.get("segments"),
                timings=found.get("timings", {}),
                input_sha256=result.claim.sha256,
                feature_fingerprint=version.feature_fingerprint,
            )
        )
    sites.apply_site_rules(batch, rows)
    return rows


def _save_audio_facts(results: Sequence[Result]) -> None:
    """Sample rate, channels and duration of the decoded recordings, in one statement.

    (QuerySet.bulk_update builds a CASE per field and row: it cost more than the
    rest of the chunk's writes together.)
    """
    decoded = [result for result in results if result.sample_rate is not None]
    if not decoded:
        return
    sql = f"""
        UPDATE {Recording._meta.db_table} AS r
        SET sample_rate = v.rate, channels = v.channels, duration_s = v.duration
        FROM unnest(%s::bigint[], %s::integer[], %s::integer[], %s::double precision[])
            AS v(id, rate, channels, duration)
        WHERE r.id = v.id
    """  # noqa: S608 - table name only
    columns = (
        [result.claim.recording_id for result in decoded],
        [result.sample_rate for result in decoded],
        [result.channels for result in decoded],
        [result.duration_s for result in decoded],
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, list(columns))


def _finish(results: Sequence[Result]) -> list[str]:
    """Move claimed rows to their final state; only rows still held by this claim change."""
    if not results:
        return []
    values = ", ".join(["(%s::bigint, %s::integer, %s, %s, %s)"] * len(results))
    params: list[Any] = []
    for result in results:
        params += [result.claim.analysis_id, result.claim.attempts, result.status]
        params += [result.error_code[:50], result.error_message]
    sql = f"""
        UPDATE {Analysis._meta.db_table} AS a
        SET status = v.status, error_code = v.code, error_message = v.message, finished_at = now()
        FROM (VALUES {values}) AS v(id, attempts, status, code, message)
        WHERE a.id = v.id AND a.attempts = v.attempts AND a.status = %s
        RETURNING a.status
    """  # noqa: S608 - placeholders only
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, Status.RUNNING])
        return [row[0] for row in cursor.fetchall()]


def _update_claimed(claims: Sequence[Claim], *, status: str, code: str, message: str, finished: bool) -> int:
    sql = f"""
        UPDATE {Analysis._meta.db_table} AS a
        SET status = %s, error_code = %s, error_message = %s,
            finished_at = CASE WHEN %s THEN now() ELSE NULL END
        FROM unnest(%s::bigint[], %s::integer[]) AS v(id, attempts)
        WHERE a.id = v.id AND a.attempts = v.attempts AND a.status = %s
    """  # noqa: S608 - table name only
    ids = [claim.analysis_id for claim in claims]
    attempts = [claim.attempts for claim in claims]
    with connection.cursor() as cursor:
        cursor.execute(sql, [status, code, message, finished, ids, attempts, Status.RUNNING])
        return int(cursor.rowcount)


def _fail_all(batch: Batch, claims: Sequence[Claim], *, code: str, message: str) -> None:
    results = [Result(claim, error_code=code, error_message=message[:2000]) for claim in claims]
    record_results(batch, results)
