"""Prometheus metrics at /metrics, for autoscalers (KEDA, a Kubernetes HPA) and dashboards.

Every number is read when the scraper asks: queue depths from Redis, the rest
from PostgreSQL, which holds every state the pipeline goes through. Web and
workers are separate processes on separate hosts; counters kept in their memory
would need prometheus_client's multiprocess mode (a shared folder of files per
host) and a scrape of every worker, and would restart at zero with each
process. Read from the database, one scrape of any web process sees the whole
deployment, and nothing in the task path has to count. The cost is a few
aggregate queries per scrape that grow with the tables (counts of analyses,
recordings and batches; the analysis-time histogram is read incrementally, see
AnalysisSeconds), and totals that go down when batches are deleted, which
Prometheus reads as a counter reset.
"""

import hmac
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobs import monitoring
from jobs.models import Analysis, Batch, ModelVersion, Prediction, Recording

logger = logging.getLogger(__name__)

# Per recording: decode, features, inference, quality and segmentation (Prediction.timings,
# milliseconds; named, since reading every key of every row cost five times as much).
TIMED_STAGES = ("decode_ms", "features_ms", "inference_ms", "quality_ms", "segmentation_ms")
ANALYSIS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Upload (or the scheduled start of a re-analysis) to the batch's last result.
BATCH_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# Longer than any chunk's write transaction plus the clock skew between hosts (see AnalysisSeconds).
SETTLE = timedelta(minutes=2)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.LUBDUB_METRICS_TOKEN
    if not token:
        return HttpResponse(
            "Metrics are off: set LUBDUB_METRICS_TOKEN and send it as 'Authorization: Bearer <token>'.\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    if not _bearer_matches(request, token):
        response = HttpResponse(
            "Send the metrics token as 'Authorization: Bearer <token>' (LUBDUB_METRICS_TOKEN).\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LubDubCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class LubDubCollector(Collector):
    """The deployment's state as metric families, read at collection time."""

    def describe(self) -> Iterable[Metric]:
        return []  # nothing is read at registration

    def collect(self) -> Iterator[Metric]:
        yield from queue_metrics()
        try:
            families = list(database_metrics())
        except (DatabaseError, InterfaceError):
            # Queue depths still drive the autoscaler while the database is away;
            # the log says why (down, or not migrated: both read as 0 here).
            logger.warning("metrics: PostgreSQL did not answer", exc_info=True)
            families, up = [], 0
        else:
            up = 1
        yield GaugeMetricFamily("lubdub_database_up", "1 when PostgreSQL answered this scrape.", value=up)
        yield from families


def queue_metrics() -> Iterator[Metric]:
    depths = monitoring.queue_depths()
    yield GaugeMetricFamily(
        "lubdub_broker_up", "1 when Redis answered this scrape.", value=0 if depths is None else 1
    )
    depth = GaugeMetricFamily(
        "lubdub_queue_depth",
        "Celery messages waiting in each queue (an analyze message is one chunk).",
        labels=["queue"],
    )
    for queue, waiting in sorted((depths or {}).items()):
        depth.add_metric([queue], waiting)
    yield depth


def database_metrics() -> Iterator[Metric]:
    models = {version.pk: version.slug for version in ModelVersion.objects.only("name", "version")}
    yield from _analysis_counts(models)
    yield from _batch_failures()
    yield from _batch_counts()
    yield _analysis_seconds(models)
    yield _batch_latency()


def _analysis_counts(models: dict[int, str]) -> Iterator[Metric]:
    analysed = CounterMetricFamily(
        "lubdub_recordings_analysed", "Recordings a model version has read (analyses done).", labels=["model"]
    )
    failed = CounterMetricFamily(
        "lubdub_recording_failures",
        "Recordings that failed, by stage (ingest: refused member; analysis: could not be read) and code.",
        labels=["stage", "code"],
    )
    waiting = GaugeMetricFamily(
        "lubdub_analyses", "Analyses not finished yet: the backlog in recordings.", labels=["status"]
    )
    rows = Analysis.objects.values_list("status", "error_code", "batch__model_version_id").annotate(
        n=Count("id")
    )
    done: dict[str, int] = dict.fromkeys(models.values(), 0)
    failures: dict[str, int] = {}
    open_: dict[str, int] = {Analysis.Status.PENDING: 0, Analysis.Status.RUNNING: 0}
    for status, code, model_id, n in rows:
        if status == Analysis.Status.DONE:
            slug = models.get(model_id, str(model_id))
            done[slug] = done.get(slug, 0) + n
        elif status == Analysis.Status.FAILED:
            failures[code or "unknown"] = failures.get(code or "unknown", 0) + n
        elif status in open_:
            open_[status] += n
    for slug, n in sorted(done.items()):
        analysed.add_metric([slug], n)
    for code, n in sorted(failures.items()):
        failed.add_metric(["analysis", code], n)
    rejected = Recording.objects.filter(status=Recording.Status.REJECTED).values_list("error_code")
    for code, n in sorted(rejected.annotate(n=Count("id")).values_list("error_code", "n")):
        failed.add_metric(["ingest", code or "unknown"], n)
    for status, n in sorted(open_.items()):
        waiting.add_metric([status], n)
    yield from (analysed, failed, waiting)


def _batch_failures() -> Iterator[Metric]:
    failed = CounterMetricFamily(
        "lubdub_batches_failed",
        "Batches that failed as a whole (not an archive, a zip bomb...), by code.",
        labels=["code"],
    )
    rows = Batch.objects.filter(status=Batch.Status.FAILED).values_list("error_code").annotate(n=Count("id"))
    for code, n in sorted(rows.values_list("error_code", "n")):
        failed.add_metric([code or "unknown"], n)
    yield failed


def _batch_counts() -> Iterator[Metric]:
    batches = GaugeMetricFamily("lubdub_batches", "Batches in each status.", labels=["status"])
    counts = dict(Batch.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    for status in Batch.Status.values:
        batches.add_metric([status], counts.get(status, 0))
    yield batches


def _analysis_seconds(models: dict[int, str]) -> Metric:
    family = HistogramMetricFamily(
        "lubdub_analysis_seconds",
        "Worker compute per recording (decode, features, inference, quality, segmentation), by model.",
        labels=["model"],
    )
    for model_id, tally in sorted(ANALYSIS_SECONDS.read().items()):
        family.add_metric([models.get(model_id, str(model_id))], *tally.buckets(ANALYSIS_BUCKETS))
    return family


def _batch_latency() -> Metric:
    family = HistogramMetricFamily(
        "lubdub_batch_latency_seconds",
        "Completed batches: upload (a re-analysis: its start) to the last result, by kind.",
        labels=["kind"],
    )
    table = Batch._meta.db_table
    seconds = f"""
        SELECT kind AS label,
               extract(epoch FROM finished_at - greatest(created_at, coalesce(scheduled_for, created_at)))
                   AS seconds
        FROM {table} WHERE finished_at IS NOT NULL AND status IN %s
    """  # noqa: S608 - table name only
    reported = tuple(str(status) for status in Batch.REPORTED)
    for kind, tally in sorted(_aggregate(seconds, BATCH_BUCKETS, [reported]).items()):
        family.add_metric([kind], *tally.buckets(BATCH_BUCKETS))
    return family


@dataclass
class Tally:
    """One label's histogram: cumulative counts at each bound, the count and the sum."""

    cumulative: list[int]
    count: int = 0
    total: float = 0.0

    def __add__(self, other: "Tally") -> "Tally":
        counts = [a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)]
        return Tally(counts, self.count + other.count, self.total + other.total)

    def buckets(self, bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
        pairs = [(repr(float(bound)), float(n)) for bound, n in zip(bounds, self.cumulative, strict=True)]
        return [*pairs, ("+Inf", float(self.count))], self.total


def _aggregate(rows_sql: str, bounds: Sequence[float], params: Sequence[Any] = ()) -> dict[Any, Tally]:
    """Per label, the histogram of ``rows_sql``'s (label, seconds) rows, counted in the database."""
    columns = ", ".join(f"count(*) FILTER (WHERE seconds <= {float(bound)!r})" for bound in bounds)
    sql = (
        f"SELECT label, {columns}, count(*), coalesce(sum(seconds), 0) FROM ({rows_sql}) AS s GROUP BY label"  # noqa: S608 - generated from constants
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        rows = cursor.fetchall()
    return {label: Tally(list(counts), int(count), float(total)) for label, *counts, count, total in rows}


class AnalysisSeconds:
    """The analysis-time histogram, read incrementally by this process.

    Reading the timings of every prediction took 17 s a scrape with a million
    of them. Predictions are only ever added, so this process keeps the counts
    up to a watermark id and each scrape reads the rows above it. Rows above
    the watermark are counted afresh every time until they are SETTLE old: a
    lower id may still be uncommitted while a higher one is visible (chunks
    commit in any order), and a row skipped once would never be counted. The
    first scrape of each process reads every row once. Deleted predictions stay
    counted, as a counter should.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._through_id = 0
        self._settled: dict[int, Tally] = {}

    def read(self) -> dict[int, Tally]:
        with self._lock:
            self._settle()
            fresh = self._count(after=self._through_id)
        return {
            model: self._settled.get(model, _empty()) + fresh.get(model, _empty())
            for model in self._settled.keys() | fresh.keys()
        }

    def _settle(self) -> None:
        if self._ids_started_again():
            self._through_id, self._settled = 0, {}
        cutoff = timezone.now() - SETTLE
        boundary = (
            Prediction.objects.filter(id__gt=self._through_id, created_at__lt=cutoff)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
        if boundary is None:
            return
        for model, tally in self._count(after=self._through_id, through=boundary).items():
            self._settled[model] = self._settled.get(model, _empty()) + tally
        self._through_id = boundary

    def _ids_started_again(self) -> bool:
        """The id sequence is behind the watermark (TRUNCATE ... RESTART IDENTITY, say)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)",
                [Prediction._meta.db_table],
            )
            row = cursor.fetchone()
        return (row[0] or 0) < self._through_id if row else False

    def _count(self, *, after: int, through: int | None = None) -> dict[int, Tally]:
        seconds = " + ".join(f"coalesce((timings->>'{stage}')::float8, 0)" for stage in TIMED_STAGES)
        upper = "" if through is None else "AND id <= %s"
        rows_sql = f"""
            SELECT model_version_id AS label, ({seconds}) / 1000.0 AS seconds
            FROM {Prediction._meta.db_table} WHERE id > %s {upper}
        """  # noqa: S608 - table name and constants only
        return _aggregate(rows_sql, ANALYSIS_BUCKETS, [after] if through is None else [after, through])


def _empty() -> Tally:
    return Tally([0] * len(ANALYSIS_BUCKETS))


ANALYSIS_SECONDS = AnalysisSeconds()
