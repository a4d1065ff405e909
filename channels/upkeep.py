"""The channels tick and the decisions about messages whose outcome is unknown."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels import heartbeat
from channels.actions import (
    ENQUEUE_LEASE,
    RECONCILE_AFTER,
    RECONCILE_WINDOW,
    _after_success,
    _announce,
    _fail,
    enqueue_send,
    outgoing,
    record_event,
)
from channels.backends.base import SendResult
from channels.models import EventKind, Message, MessageStatus
from channels.receipts import prune_rejected_receipts, reenqueue_receipts
from channels.registry import backends

BATCH = 200


def claim_due_messages(*, now: datetime, batch: int = BATCH) -> list[int]:
    """Queued messages whose time has come (retries, rate-limited, or never enqueued
    because the broker was down). Leased for a minute so the next tick skips them."""
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.QUEUED, next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch]
        )
        if ids:
            Message.objects.filter(pk__in=ids).update(lease_until=now + ENQUEUE_LEASE)
            for message_id in ids:
                transaction.on_commit(lambda message_id=message_id: enqueue_send(message_id))
    return ids


def expire_stale_sends(*, now: datetime) -> int:
    """A worker that claimed a message and vanished (killed mid-send): we cannot know
    whether the provider got it, so the message becomes unknown, never blindly resent."""
    stale = Message.objects.filter(status=MessageStatus.SENDING, lease_until__lt=now)
    count = 0
    for message in stale[:BATCH]:
        with transaction.atomic():
            updated = Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING, lease_until__lt=now).update(
                status=MessageStatus.UNKNOWN,
                lease_until=None,
                reconcile_at=now,
                error="The worker stopped while sending; the provider may have the message.",
                error_code="unknown",
            )
            if updated:
                _announce(message, MessageStatus.SENDING, MessageStatus.UNKNOWN)
                count += 1
    return count


def reconcile_message(*, message_id: int, now: datetime) -> str:
    """Try to settle an unknown outcome through the provider's status API; when nothing
    settles it within the window, hand it to a person."""
    message = Message.objects.filter(pk=message_id, status=MessageStatus.UNKNOWN).first()
    if message is None:
        return "settled already"
    verdict = None
    try:
        backend = backends[message.alias]
        if backend.supports_status_lookup:
            verdict = backend.fetch_status(outgoing(message))
    except Exception as exc:  # a lookup failure is not a verdict
        verdict = None
        message.error = f"{message.error} Status lookup failed: {exc}"[:4000]
    if verdict in ("sent", "delivered"):
        _after_success(message, now, None, SendResult(provider_message_id=message.provider_message_id, status=verdict))
        if verdict == "delivered":
            record_event(message=message, kind=EventKind.DELIVERED, occurred_at=now, provider_event_id="herald:lookup")
        return f"settled: {verdict}"
    if verdict == "failed":
        _fail(message, now, "failed", "The provider's status API says the message failed.")
        return "settled: failed"
    attempted_at = message.sent_at or message.created_at
    last = message.attempts_log.order_by("-number").first()
    if last is not None:
        attempted_at = last.started_at
    if now - attempted_at >= RECONCILE_WINDOW:
        Message.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN).update(
            needs_decision=True, reconcile_at=None
        )
        return "needs a person's decision"
    Message.objects.filter(pk=message.pk, status=MessageStatus.UNKNOWN).update(reconcile_at=now + RECONCILE_AFTER)
    return "still unknown"


def resend_message(*, message_id: int, now: datetime | None = None) -> bool:
    """A person decided the unknown message did not arrive: send it again."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = Message.objects.filter(pk=message_id, status=MessageStatus.UNKNOWN).update(
            status=MessageStatus.QUEUED,
            needs_decision=False,
            reconcile_at=None,
            next_attempt_at=now,
            expires_at=max(now + RECONCILE_WINDOW, now),
            error="Resent by staff after an unknown outcome.",
        )
        if updated:
            transaction.on_commit(lambda: enqueue_send(message_id))
    return bool(updated)


def close_message(*, message_id: int, by: str, now: datetime | None = None) -> bool:
    """A person decided the unknown message is settled (arrived, or not worth resending)."""
    now = now or timezone.now()
    message = Message.objects.filter(pk=message_id, status=MessageStatus.UNKNOWN).first()
    if message is None:
        return False
    _fail(message, now, "closed", f"Closed by {by} after an unknown outcome; not resent.")
    return True


def tick(*, now: datetime) -> str:
    """The channels beat: due retries, vanished workers, unknown outcomes."""
    from channels.tasks import reconcile_message_task

    due = claim_due_messages(now=now)
    stale = expire_stale_sends(now=now)
    unknown = list(
        Message.objects.filter(status=MessageStatus.UNKNOWN, reconcile_at__lte=now).values_list("pk", flat=True)[:BATCH]
    )
    for message_id in unknown:
        reconcile_message_task.delay(message_id)
    receipts = reenqueue_receipts(now=now)
    prune_rejected_receipts(now=now)
    heartbeat.record_tick("channels", now)
    return f"due {len(due)}, stale {stale}, reconciling {len(unknown)}, receipts re-enqueued {receipts}"


def replay_receipts(*, receipt_ids: list[int], now: datetime) -> int:
    """Put failed receipts back in the queue (after a parser or configuration fix) and
    enqueue them. Only failed ones: a processed receipt's events are recorded already,
    and an opt-out in it would be announced a second time. Returns how many moved."""
    from channels.models import Receipt
    from channels.receipts import enqueue_receipt

    with transaction.atomic():
        ids = list(
            Receipt.objects.select_for_update()
            .filter(pk__in=receipt_ids, status=Receipt.Status.FAILED)
            .values_list("pk", flat=True)
        )
        Receipt.objects.filter(pk__in=ids).update(status=Receipt.Status.PENDING, enqueued_at=now, processed_at=None)
        for receipt_id in ids:
            transaction.on_commit(lambda receipt_id=receipt_id: enqueue_receipt(receipt_id))
    return len(ids)
