"""Posting a finished batch's summary to its webhook, signed, with retries.

A batch carries the URL given at upload (else its organisation's default). When
it finishes, one caller wins a conditional UPDATE and queues the delivery task;
the task posts the summary and records every attempt as a WebhookDelivery row.

The body is signed with the organisation's secret: the header
``X-LubDub-Signature: t=<unix seconds>,v1=<hex>`` carries
HMAC-SHA256(secret, "<t>." + body). Receivers recompute it over the raw body,
compare in constant time and refuse old timestamps.

Outbound requests reach only https URLs on public addresses, unless the host is
in LUBDUB_WEBHOOK_ALLOWED_HOSTS (or LUBDUB_WEBHOOK_ALLOW_PRIVATE is on): every
address the name resolves to is checked, and the connection goes to a checked
address, so a name that changes its answer between check and connect cannot
reach the platform's own services. Redirects are never followed.
"""

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, QuerySet
from django.urls import reverse
from django.utils import timezone

from jobs.models import Batch, Organisation, Report, WebhookDelivery
from jobs.services import access, queue, verdicts
from jobs.services.refusals import Refused

logger = logging.getLogger(__name__)

EVENT = "batch.finished"
SIGNATURE_HEADER = "X-LubDub-Signature"
URL_MAX_LENGTH = 500
# The receiver's answer is read only this far: it is not ours to store.
ANSWER_BYTES = 64 * 1024
# A receiver that answers these may accept the same delivery later.
RETRIED_STATUSES = frozenset({408, 425, 429})


class WebhookRefused(Refused):
    """A webhook URL the platform will not post to."""


# --- who and where ----------------------------------------------------------------


def can_manage(user: User, organisation: Organisation) -> bool:
    """Staff, and the organisation's administrators: they see secrets and delivery logs."""
    return access.can_administer(user, organisation)


def check_url(url: str, *, resolve: bool = True) -> str:
    """The URL stripped, if the platform may post to it; WebhookRefused says why not."""
    url = url.strip()
    if len(url) > URL_MAX_LENGTH:
        raise WebhookRefused(
            "bad_webhook_url", f"The webhook URL is longer than {URL_MAX_LENGTH} characters."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused("bad_webhook_url", f"The webhook URL is malformed: {exc}.") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookRefused(
            "bad_webhook_url", "The webhook URL must be an absolute http(s) URL with a host."
        )
    if parts.username or parts.password:
        raise WebhookRefused("bad_webhook_url", "The webhook URL may not carry a user name or password.")
    trusted = _trusted(host)
    if parts.scheme != "https" and not trusted:
        raise WebhookRefused("webhook_https_required", "The webhook URL must use https.")
    if resolve and not trusted:
        public_addresses(host, port or (443 if parts.scheme == "https" else 80))
    return url


def public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, all of them public; WebhookRefused otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(
            "webhook_unresolvable", f"The webhook host {host!r} could not be resolved."
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        if not _is_public(address):
            raise WebhookRefused(
                "webhook_private_address",
                f"The webhook host {host!r} resolves to {address}, a private, loopback or reserved address; "
                "webhooks may only reach public addresses.",
            )
    return addresses


def _trusted(host: str) -> bool:
    return settings.LUBDUB_WEBHOOK_ALLOW_PRIVATE or host.strip("[]") in settings.LUBDUB_WEBHOOK_ALLOWED_HOSTS


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def batch_url(organisation: Organisation, given: str | None) -> str:
    """The webhook a new batch carries: the one given (checked), else the organisation's default."""
    if given and given.strip():
        return check_url(given)
    return organisation.webhook_url


def set_default(organisation: Organisation, url: str) -> None:
    organisation.webhook_url = check_url(url) if url.strip() else ""
    Organisation.objects.filter(pk=organisation.pk).update(webhook_url=organisation.webhook_url)


def secret_for(organisation: Organisation) -> str:
    """The organisation's signing secret, made on first use (one caller wins)."""
    if not organisation.webhook_secret:
        Organisation.objects.filter(pk=organisation.pk, webhook_secret="").update(
            webhook_secret=secrets.token_hex(32)
        )
        organisation.webhook_secret = Organisation.objects.values_list("webhook_secret", flat=True).get(
            pk=organisation.pk
        )
    return organisation.webhook_secret


def rotate_secret(organisation: Organisation) -> str:
    organisation.webhook_secret = secrets.token_hex(32)
    Organisation.objects.filter(pk=organisation.pk).update(webhook_secret=organisation.webhook_secret)
    return organisation.webhook_secret


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- queueing ---------------------------------------------------------------------


def notify_finished(batch_id: UUID | str, *, reports_done: bool = False) -> bool:
    """Queue the delivery of a finished batch's summary, once; True if this call queued it.

    A completed batch is announced once its reports are written (``reports_done``),
    so its report links work when the receiver follows them.
    """
    statuses = Batch.FINISHED if reports_done else tuple(set(Batch.FINISHED) - set(Batch.REPORTED))
    claimed = (
        Batch.objects.filter(pk=batch_id, status__in=statuses, webhook_queued_at__isnull=True)
        .exclude(webhook_url="")
        .update(webhook_queued_at=timezone.now())
    )
    if claimed:
        _send_after_commit(batch_id)
    return bool(claimed)


def queue_missed(cutoff: Any) -> int:
    """Batches finished before ``cutoff`` whose notification was never queued, or never sent."""
    never_queued = Batch.objects.filter(
        status__in=Batch.FINISHED, finished_at__lt=cutoff, webhook_queued_at__isnull=True
    ).exclude(webhook_url="")
    count = 0
    for batch_id in never_queued.values_list("pk", flat=True)[:100]:
        count += notify_finished(batch_id, reports_done=True)
    lost = (
        Batch.objects.filter(webhook_queued_at__lt=cutoff)
        .exclude(webhook_url="")
        .annotate(attempts=Count("webhook_deliveries"))
        .filter(attempts=0)
    )
    for batch_id in lost.values_list("pk", flat=True)[:100]:
        # Moving the time on is the claim: the next sweep does not send it again.
        if Batch.objects.filter(pk=batch_id, webhook_queued_at__lt=cutoff).update(
            webhook_queued_at=timezone.now()
        ):
            _send_after_commit(batch_id)
            count += 1
    return count


def _send_after_commit(batch_id: UUID | str) -> None:
    def send() -> None:
        try:
            queue.send(queue.DELIVER_WEBHOOK_TASK, [str(batch_id)])
        except queue.BROKER_ERRORS as exc:
            logger.warning("batch %s: webhook not queued (%s); the sweeper queues it again", batch_id, exc)

    transaction.on_commit(send)


# --- delivering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    retry: bool

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt_delivery(batch_id: UUID | str) -> float | None:
    """Post the summary once more; the seconds to wait before the next attempt, or None when done."""
    batch = Batch.objects.select_related("organisation", "model_version").filter(pk=batch_id).first()
    if batch is None or not batch.webhook_url:
        return None
    log = WebhookDelivery.objects.filter(batch=batch)
    if log.filter(delivered=True).exists():
        return None  # a task run twice: the receiver has it already
    attempt = (log.aggregate(last=Max("attempt"))["last"] or 0) + 1
    if attempt > settings.LUBDUB_WEBHOOK_ATTEMPTS:
        return None
    try:
        # The unique (batch, attempt) row is the claim: a second run of this task posts nothing.
        delivery = WebhookDelivery.objects.create(
            batch=batch, url=batch.webhook_url, attempt=attempt, attempted_at=timezone.now()
        )
    except IntegrityError:
        return None
    body = json.dumps(summary(batch), separators=(",", ":")).encode()
    started = time.monotonic()
    answer = post(batch.webhook_url, body, secret_for(batch.organisation), batch_id=str(batch.pk))
    wait = None
    if answer.retry and attempt < settings.LUBDUB_WEBHOOK_ATTEMPTS:
        wait = min(
            settings.LUBDUB_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1),
            settings.LUBDUB_WEBHOOK_BACKOFF_MAX_SECONDS,
        )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status_code=answer.status_code,
        delivered=answer.delivered,
        error=answer.error,
        duration_ms=round((time.monotonic() - started) * 1000),
        next_attempt_at=timezone.now() + timedelta(seconds=wait) if wait is not None else None,
    )
    return wait


def post(url: str, body: bytes, secret: str, *, batch_id: str) -> Answer:
    """One POST, to a checked address, following no redirect."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "LubDub-Webhook/1",
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        "X-LubDub-Event": EVENT,
        "X-LubDub-Batch": batch_id,
    }
    try:
        check_url(url, resolve=False)
        connection = _connection(url)
    except WebhookRefused as exc:
        return Answer(None, exc.message, retry=exc.code == "webhook_unresolvable")
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with contextlib.closing(connection):
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500], retry=True)
    code = response.status
    if 200 <= code < 300:
        return Answer(code, "", retry=False)
    if 300 <= code < 400:
        return Answer(code, "The receiver answered with a redirect, which is not followed.", retry=False)
    return Answer(code, f"The receiver answered {code} {response.reason}."[:500], retry=_retried(code))


def _retried(code: int) -> bool:
    return code >= 500 or code in RETRIED_STATUSES


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _trusted(host):
        addresses = sorted({str(info[4][0]) for info in _resolve(host, port)})
    else:
        addresses = public_addresses(host, port)
    timeout = settings.LUBDUB_WEBHOOK_TIMEOUT_SECONDS
    if parts.scheme == "https":
        return _PinnedHTTPSConnection(host, port, addresses[0], timeout)
    return _PinnedHTTPConnection(host, port, addresses[0], timeout)


def _resolve(host: str, port: int) -> list[Any]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(
            "webhook_unresolvable", f"The webhook host {host!r} could not be resolved."
        ) from exc


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to by then."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        # The certificate is checked against the URL's host name, not the address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


# --- what is posted ------------------------------------------------------------------


def summary(batch: Batch) -> dict[str, Any]:
    """The JSON a receiver gets: the batch, its counts, its model and where to read more."""
    report = (
        Report.objects.filter(batch=batch, model_version=batch.model_version, format=Report.Format.JSON)
        .values_list("summary", flat=True)
        .first()
    )
    by_label, by_decision = _class_counts(batch, report)
    return {
        "event": EVENT,
        "batch": {
            "id": str(batch.pk),
            "name": batch.name,
            "organisation": batch.organisation.slug,
            "status": batch.status,
            "error_code": batch.error_code or None,
            "error_message": batch.error_message or None,
            "model_version": batch.model_version.slug,
            "created_at": batch.created_at.isoformat(),
            "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        },
        "counts": {
            "files": batch.total_count,
            "done": batch.done_count,
            "failed": batch.failed_count,
            "rejected": batch.rejected_count,
            "skipped": batch.skipped_count,
            "by_decision": by_decision,
            "by_label": by_label,
        },
        "reports_ready": report is not None,
        "links": _links(batch),
    }


def _class_counts(batch: Batch, report: dict[str, Any] | None) -> tuple[dict[str, int], dict[str, int]]:
    if report:
        # The report's own figures, so the webhook says what the report says.
        counts = report.get("counts") or {}
        return dict(counts.get("by_class") or {}), dict(counts.get("by_decision") or {})
    counted = verdicts.batch_counts(batch)
    return counted.by_class, counted.by_decision


def _links(batch: Batch) -> dict[str, str]:
    base = settings.LUBDUB_PUBLIC_URL
    paths = {
        "page": reverse("batch-detail", args=[batch.pk]),
        "api": reverse("api:batch-detail", args=[batch.pk]),
        "recordings": reverse("api:batch-recordings", args=[batch.pk]),
        "reports": reverse("api:batch-reports", args=[batch.pk]),
        **{
            f"report_{fmt}": reverse("api:batch-report", args=[batch.pk, fmt]) for fmt in Report.Format.values
        },
    }
    return {name: base + path for name, path in paths.items()}


def deliveries(batch: Batch) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(batch=batch).order_by("attempt")


def status_line(batch: Batch) -> str:
    """One sentence on the batch's webhook for its administrators; "" when it has none."""
    if not batch.webhook_url:
        return ""
    host = urlsplit(batch.webhook_url).hostname or batch.webhook_url
    last = deliveries(batch).last()
    if last is None:
        if batch.webhook_queued_at:
            return f"Webhook to {host}: queued."
        return f"Webhook to {host}: posted when the batch finishes."
    answer = f"HTTP {last.status_code}" if last.status_code is not None else (last.error or "no answer")
    if last.delivered:
        return f"Webhook to {host}: delivered on attempt {last.attempt} ({answer}, {last.duration_ms} ms)."
    if last.next_attempt_at:
        when = timezone.localtime(last.next_attempt_at).strftime("%H:%M:%S")
        return f"Webhook to {host}: attempt {last.attempt} failed ({answer}); trying again at {when}."
    if not last.error and last.status_code is None:
        return f"Webhook to {host}: attempt {last.attempt} under way."
    attempts = f"{last.attempt} attempt{'s' if last.attempt > 1 else ''}"
    return f"Webhook to {host}: not delivered after {attempts} ({answer})."
