"""Writes of the channels room: the ledger of messages, attempts and receipts.

A message is sent at most once because its row is claimed with a conditional UPDATE
(``queued`` -> ``sending``) that exactly one worker wins, and a finished row is never
claimed again; ``idempotency_key`` is unique, so asking twice makes one row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from channels import ratelimit, signals
from channels.backends.base import OutgoingMessage, SendResult
from channels.errors import ChannelError, OutcomeUnknown
from channels.models import STATUS_RANK, DeliveryAttempt, DeliveryEvent, EventKind, Message, MessageStatus
from channels.registry import backends

log = logging.getLogger(__name__)

# A claimed message whose worker vanished for this long is treated as "unknown".
SENDING_LEASE = timedelta(seconds=getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) + 60)
# The tick re-enqueues a due message it already enqueued only after this long.
ENQUEUE_LEASE = timedelta(seconds=60)
RECONCILE_AFTER = timedelta(minutes=2)
# An unknown outcome nothing settled within this window waits for a person.
RECONCILE_WINDOW = timedelta(hours=1)
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0


def default_max_age() -> timedelta:
    return timedelta(seconds=getattr(settings, "HERALD_MESSAGE_MAX_AGE_SECONDS", 86400))


# --- creating --------------------------------------------------------------------------


def send_message(
    *,
    kind: str,
    address: str,
    idempotency_key: str,
    subject: str = "",
    text: str = "",
    html: str = "",
    data: Mapping[str, Any] | None = None,
    alias: str | None = None,
    now: datetime | None = None,
    max_age: timedelta | None = None,
) -> Message:
    """Create the ledger row for a message and queue it, or return the row already made
    for ``idempotency_key`` (then nothing is queued again)."""
    now = now or timezone.now()
    alias = alias or backends.default_alias(kind)
    if backends.kind_of(alias) != kind:
        raise ValueError(f"The channel backend {alias!r} does not send {kind!r} messages.")
    existing = Message.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            message = Message.objects.create(
                kind=kind,
                alias=alias,
                address=address,
                subject=subject[:500],
                text=text,
                html=html,
                data=dict(data or {}),
                idempotency_key=idempotency_key,
                status=MessageStatus.QUEUED,
                next_attempt_at=now,
                expires_at=now + (max_age or default_max_age()),
                created_at=now,
            )
            DeliveryEvent.objects.create(
                message=message, kind=EventKind.QUEUED, occurred_at=now, provider_event_id="herald:queued"
            )
            transaction.on_commit(lambda: enqueue_send(message.pk))
    except IntegrityError:
        return Message.objects.get(idempotency_key=idempotency_key)
    return message


def enqueue_send(message_id: int) -> bool:
    from channels.tasks import send_message_task

    try:
        send_message_task.apply_async(args=[message_id], retry=True, retry_policy={"max_retries": 0})
    except Exception as exc:  # the channels tick picks it up
        log.warning("Could not enqueue message %s (%s); the channels tick will retry.", message_id, exc)
        return False
    return True


def outgoing(message: Message) -> OutgoingMessage:
    return OutgoingMessage(
        id=message.pk,
        kind=message.kind,
        alias=message.alias,
        address=message.address,
        idempotency_key=message.idempotency_key,
        subject=message.subject,
        text=message.text,
        html=message.html,
        data=message.data,
        provider_message_id=message.provider_message_id,
    )


# --- sending -------------------------------------------------------------------------------


def deliver_message(*, message_id: int, now: datetime | None = None) -> str:
    """Claim a due message, send it once, record the attempt and the verdict."""
    now = now or timezone.now()
    claimed = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED, next_attempt_at__lte=now).update(
        status=MessageStatus.SENDING, lease_until=now + SENDING_LEASE, attempts=F("attempts") + 1
    )
    if claimed != 1:
        return "not due, already sent, or claimed by another worker"
    message = Message.objects.get(pk=message_id)
    if now >= message.expires_at:
        _fail(message, now, "expired", f"Not sent within its time limit ({message.expires_at:%Y-%m-%d %H:%M} UTC).")
        return "expired"
    try:
        backend = backends[message.alias]
    except Exception as exc:
        _fail(message, now, "misconfigured", f"The channel backend {message.alias!r} is not usable: {exc}")
        return "failed: misconfigured"
    wait = _rate_wait(backend, outgoing(message))
    if wait > 0:
        # Not an attempt: hand the slot back and come back when the bucket has a token.
        Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.QUEUED,
            attempts=F("attempts") - 1,
            next_attempt_at=now + timedelta(seconds=wait),
            lease_until=None,
        )
        return f"rate limited; rescheduled in {wait:.2f}s"
    started = time.monotonic()
    try:
        result = backend.send(outgoing(message))
    except OutcomeUnknown as exc:
        _record_attempt(message, now, started, DeliveryAttempt.Outcome.UNKNOWN, error=str(exc))
        _to_unknown(message, now, str(exc))
        return "unknown"
    except ChannelError as exc:
        return _after_error(message, now, started, exc)
    except Exception as exc:
        # A bug in a backend: fail loudly rather than retry a crash forever.
        log.exception("Backend %s crashed sending message %s", message.alias, message.pk)
        error = ChannelError(f"The backend crashed: {type(exc).__name__}: {exc}", permanent=True, code="crash")
        return _after_error(message, now, started, error)
    _after_success(message, now, started, result)
    return f"sent ({result.provider_message_id or 'no provider id'})"


def _rate_wait(backend: Any, message: OutgoingMessage) -> float:
    wait = 0.0
    for key, limit in backend.rate_limits(message):
        wait = max(wait, ratelimit.take(key, limit))
        if wait > 0:
            break
    return wait


def _record_attempt(
    message: Message,
    now: datetime,
    started: float,
    outcome: str,
    *,
    response_code: int | None = None,
    response_excerpt: str = "",
    error: str = "",
) -> None:
    DeliveryAttempt.objects.create(
        message=message,
        number=message.attempts,
        started_at=now,
        duration_ms=int((time.monotonic() - started) * 1000),
        outcome=outcome,
        response_code=response_code,
        response_excerpt=response_excerpt[:4000],
        error=error[:4000],
    )


def _after_success(message: Message, now: datetime, started: float | None, result: SendResult) -> None:
    """Mark the message sent. ``started`` is None when no attempt was made now (a status
    lookup settled an earlier one)."""
    status = MessageStatus.DELIVERED if result.status == "delivered" else MessageStatus.SENT
    with transaction.atomic():
        if started is not None:
            _record_attempt(
                message,
                now,
                started,
                DeliveryAttempt.Outcome.SENT,
                response_code=result.response_code,
                response_excerpt=result.response_excerpt,
            )
        fields = {
            "status": status,
            "provider_message_id": result.provider_message_id[:300],
            "sent_at": now,
            "lease_until": None,
            "error": "",
            "error_code": "",
        }
        if status == MessageStatus.DELIVERED:
            fields["delivered_at"] = now
        # The send result wins over a tick that meanwhile marked the slow send unknown.
        Message.objects.filter(pk=message.pk, status__in=[MessageStatus.SENDING, MessageStatus.UNKNOWN]).update(
            **fields, reconcile_at=None, needs_decision=False
        )
        DeliveryEvent.objects.get_or_create(
            message=message, kind=EventKind.SENT, provider_event_id="herald:sent", defaults={"occurred_at": now}
        )
        _announce(message, MessageStatus.SENDING, status)


def _after_error(message: Message, now: datetime, started: float, exc: ChannelError) -> str:
    delay = _backoff(message.attempts, exc.retry_after)
    retry_at = now + timedelta(seconds=delay)
    if exc.permanent or retry_at >= message.expires_at:
        with transaction.atomic():
            _record_attempt(
                message,
                now,
                started,
                DeliveryAttempt.Outcome.FAILED,
                response_code=exc.response_code,
                response_excerpt=exc.response_excerpt,
                error=exc.message,
            )
            reason = exc.message if exc.permanent else f"Gave up: {exc.message} (next try would pass its time limit)"
            _fail(message, now, exc.code or ("permanent" if exc.permanent else "expired"), reason)
            if exc.suppress_address:
                dead = {"kind": message.kind, "address": message.address, "reason": exc.dead_reason}
                transaction.on_commit(
                    lambda: signals.address_dead.send(Message, **dead, detail=exc.message, message=message)
                )
        return f"failed: {exc.message}"
    with transaction.atomic():
        _record_attempt(
            message,
            now,
            started,
            DeliveryAttempt.Outcome.RETRY,
            response_code=exc.response_code,
            response_excerpt=exc.response_excerpt,
            error=exc.message,
        )
        Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.QUEUED,
            next_attempt_at=retry_at,
            lease_until=None,
            error=exc.message[:4000],
            error_code=exc.code[:60],
        )
    return f"retry at {retry_at.isoformat()}: {exc.message}"


def _backoff(attempts: int, retry_after: float | None) -> float:
    """Exponential with jitter; the provider's Retry-After is a floor, never shortened."""
    exponential = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    jittered = exponential * random.uniform(0.8, 1.2)
    if retry_after is not None:
        return max(retry_after, 1.0)
    return jittered


def _fail(message: Message, now: datetime, code: str, reason: str) -> None:
    with transaction.atomic():
        old = Message.objects.select_for_update().values_list("status", flat=True).get(pk=message.pk)
        Message.objects.filter(pk=message.pk).update(
            status=MessageStatus.FAILED,
            failed_at=now,
            error=reason[:4000],
            error_code=code[:60],
            lease_until=None,
            next_attempt_at=None,
            reconcile_at=None,
        )
        DeliveryEvent.objects.get_or_create(
            message=message,
            kind=EventKind.FAILED,
            provider_event_id="herald:failed",
            defaults={"occurred_at": now, "detail": reason[:500]},
        )
        _announce(message, old, MessageStatus.FAILED)


def _to_unknown(message: Message, now: datetime, reason: str) -> None:
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
            status=MessageStatus.UNKNOWN,
            lease_until=None,
            reconcile_at=now + RECONCILE_AFTER,
            error=reason[:4000],
            error_code="unknown",
        )
        if updated:
            _announce(message, MessageStatus.SENDING, MessageStatus.UNKNOWN)


def _announce(message: Message, old: str, new: str) -> None:
    if old != new:
        transaction.on_commit(
            lambda: signals.delivery_status_changed.send(Message, message=Message.objects.get(pk=message.pk), old=old, new=new)
        )


# --- receipts ------------------------------------------------------------------------------

# Which message status a receipt event moves to (events not listed leave it alone).
EVENT_STATUS = {
    EventKind.SENT: MessageStatus.SENT,
    EventKind.DELIVERED: MessageStatus.DELIVERED,
    EventKind.FAILED: MessageStatus.FAILED,
    EventKind.BOUNCED: MessageStatus.BOUNCED,
    EventKind.OPENED: MessageStatus.DELIVERED,
    EventKind.CLICKED: MessageStatus.DELIVERED,
}
# Events that tell us the address must not be written to again.
DEAD_ADDRESS_EVENTS = {EventKind.BOUNCED: "hard_bounce", EventKind.COMPLAINED: "complaint"}


def record_event(
    *,
    message: Message,
    kind: str,
    occurred_at: datetime,
    provider_event_id: str,
    raw: Mapping[str, Any] | None = None,
    detail: str = "",
    address_dead: str | None = None,
) -> bool:
    """Record a provider receipt once and move the message forward. Returns False for a
    receipt already recorded. ``address_dead`` names why the address is dead when the
    event says so beyond a bounce or complaint (an opt-out, an unregistered token)."""
    with transaction.atomic():
        _, created = DeliveryEvent.objects.get_or_create(
            message=message,
            kind=kind,
            provider_event_id=provider_event_id[:300],
            defaults={"occurred_at": occurred_at, "raw": dict(raw or {}), "detail": detail[:500]},
        )
        if not created:
            return False
        locked = Message.objects.select_for_update().get(pk=message.pk)
        old = locked.status
        new = EVENT_STATUS.get(kind)  # type: ignore[call-overload]
        fields: dict[str, Any] = {}
        if kind == EventKind.OPENED and locked.opened_at is None:
            fields["opened_at"] = occurred_at
        if kind == EventKind.CLICKED and locked.clicked_at is None:
            fields["clicked_at"] = occurred_at
        if new is not None and STATUS_RANK[new] > STATUS_RANK[MessageStatus(old)]:
            fields["status"] = new
            fields["reconcile_at"] = None
            fields["needs_decision"] = False
            if new == MessageStatus.DELIVERED and locked.delivered_at is None:
                fields["delivered_at"] = occurred_at
            if new == MessageStatus.SENT and locked.sent_at is None:
                fields["sent_at"] = occurred_at
            if new in (MessageStatus.FAILED, MessageStatus.BOUNCED):
                fields["failed_at"] = occurred_at
                fields["error"] = detail[:4000] or f"The provider reported {kind}."
        if fields:
            Message.objects.filter(pk=message.pk).update(**fields)
        if "status" in fields:
            _announce(message, old, fields["status"])
        reason = address_dead or DEAD_ADDRESS_EVENTS.get(kind)  # type: ignore[call-overload]
        if reason:
            dead = {"kind": message.kind, "address": message.address, "reason": reason}
            transaction.on_commit(lambda: signals.address_dead.send(Message, **dead, detail=detail, message=message))
    return True
