"""Writes of the orders room: the inbox, processing, replay and housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from orders.models import RejectedRequest, Shop, WebhookDelivery
from orders.platforms import get_platform
from orders.platforms.base import Envelope, PayloadError, ShopEvent
from orders.upserts import Context, DatabaseState, apply_events

log = logging.getLogger(__name__)

# Headers never worth keeping (credentials, cookies).
_DROPPED_HEADERS = {"cookie", "authorization", "proxy-authorization"}
# A delivery waiting on something external (a platform API, an order not seen yet) is
# retried by the orders tick for this long after it arrived, then failed for a person.
RETRY_FOR = timedelta(hours=24)


def keepable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v[:1000] for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}


def receive_delivery(
    *,
    shop: Shop,
    envelope: Envelope,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    source: str = "webhook",
    enqueue: bool = True,
) -> tuple[int, bool]:
    """Store an admitted delivery once. Returns (delivery id, created).

    ``INSERT .. ON CONFLICT DO NOTHING`` makes the same delivery posted three times at
    once land as one row; only the request that inserted it enqueues processing (unless
    ``enqueue`` is False: the caller processes it itself, as the demo seeding does).
    """
    table = WebhookDelivery._meta.db_table
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table}
                    (shop_id, protocol, topic, dedupe_key, headers, body, source, status, error, attempts,
                     result, received_at, enqueued_at)
                VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, 'pending', '', 0, '', %s, %s)
                ON CONFLICT (shop_id, dedupe_key) DO NOTHING
                RETURNING id
                """,
                [
                    shop.pk,
                    shop.webhook_protocol,
                    envelope.topic[:100],
                    envelope.dedupe_key[:300],
                    _json(keepable_headers(headers)),
                    body,
                    source,
                    now,
                    now,
                ],
            )
            row = cursor.fetchone()
        if row is None:
            existing = WebhookDelivery.objects.only("id").get(shop=shop, dedupe_key=envelope.dedupe_key[:300])
            return existing.pk, False
        delivery_id = int(row[0])
        if enqueue:
            transaction.on_commit(lambda: enqueue_delivery(delivery_id))
    return delivery_id, True


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def enqueue_delivery(delivery_id: int) -> bool:
    """Hand a delivery to a worker. A broker outage is logged, not raised: the row is
    committed and the orders tick re-enqueues it."""
    from orders.tasks import process_delivery_task

    try:
        process_delivery_task.apply_async(
            args=[delivery_id], retry=True, retry_policy=settings.HERALD_ENQUEUE_RETRY_POLICY
        )
    except Exception as exc:  # kombu raises several types for an unreachable broker
        log.warning("Could not enqueue delivery %s (%s); the orders tick will retry.", delivery_id, exc)
        return False
    return True


def process_delivery(*, delivery_id: int, now: datetime | None = None) -> str:
    """Parse and apply one pending delivery. Safe to run twice or concurrently: the
    delivery row is locked and only a pending one is applied. Returns what happened.

    Parsing happens before the transaction: a platform whose webhooks carry ids only
    (BigCommerce) fetches the resource over HTTP, and no row lock or transaction should
    be held open while it waits.
    """
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("shop").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return "not pending"
    events, problem = _parse(delivery)
    with transaction.atomic():
        locked = (
            # of=("self",): lock the delivery only; locking its shop too would make a
            # second delivery of the same shop skip this one.
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if locked is None:
            return "not pending, or being processed by another worker"
        locked.shop = delivery.shop
        locked.attempts += 1
        if problem is None:
            try:
                with transaction.atomic():
                    result = apply_events(Context(shop=locked.shop, delivery=locked, now=now), events)
            except PayloadError as exc:
                problem = exc
            except IntegrityError as exc:
                # Lost a race with another worker on a unique row; the next try sees it.
                problem = PayloadError(f"Conflicting concurrent update ({exc}).", retry=True)
            except Exception as exc:
                # A bug or an unexpected payload shape: keep the input and the reason; a
                # person replays it once the cause is fixed.
                log.exception("Applying delivery %s failed", delivery_id)
                problem = PayloadError(f"Unexpected error: {type(exc).__name__}: {exc}")
        if problem is not None:
            if problem.retry and now - locked.received_at < RETRY_FOR:
                locked.error = f"Will retry: {problem.reason}"
                locked.save(update_fields=["attempts", "error"])
                return locked.error
            _fail(locked, problem.reason, now)
            return f"failed: {problem.reason}"
        locked.status = WebhookDelivery.Status.PROCESSED
        locked.result = result[:500]
        locked.error = ""
        locked.processed_at = now
        locked.save(update_fields=["status", "result", "error", "processed_at", "attempts"])
        return result


def _parse(delivery: WebhookDelivery) -> tuple[list[ShopEvent], PayloadError | None]:
    module = get_platform(delivery.protocol)
    if module is None:
        return [], PayloadError(f"No platform module for protocol {delivery.protocol!r}.")
    try:
        events = module.parse(
            shop=delivery.shop, topic=delivery.topic, body=delivery.body_bytes, state=DatabaseState(delivery.shop)
        )
    except PayloadError as exc:
        return [], exc
    except Exception as exc:
        log.exception("Parsing delivery %s failed", delivery.pk)
        return [], PayloadError(f"Unexpected error while reading: {type(exc).__name__}: {exc}")
    return events, None


def _fail(delivery: WebhookDelivery, reason: str, now: datetime) -> None:
    delivery.status = WebhookDelivery.Status.FAILED
    delivery.error = reason[:5000]
    delivery.processed_at = now
    delivery.save(update_fields=["status", "error", "processed_at", "attempts"])


def replay_deliveries(*, delivery_ids: list[int], now: datetime | None = None) -> int:
    """Put failed (or processed) deliveries back in the queue, e.g. after a parser fix.
    Processing is idempotent, so replaying a processed delivery changes nothing twice."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.filter(pk__in=delivery_ids)
            .exclude(status=WebhookDelivery.Status.PENDING)
            .values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, enqueued_at=now
        )
        for delivery_id in ids:
            transaction.on_commit(lambda delivery_id=delivery_id: enqueue_delivery(delivery_id))
    return len(ids)


def reenqueue_stale_deliveries(*, now: datetime, batch: int = 500) -> int:
    """Re-enqueue deliveries still pending a while after their last enqueue (a broker
    outage, a lost task). Reads the partial index on pending rows only."""
    cutoff = now - timedelta(seconds=settings.HERALD_REENQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, enqueued_at__lt=cutoff)
            .order_by("enqueued_at")
            .values_list("pk", flat=True)[:batch]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            for delivery_id in ids:
                transaction.on_commit(lambda delivery_id=delivery_id: enqueue_delivery(delivery_id))
    return len(ids)


def record_rejection(
    *,
    shop: Shop | None,
    path: str,
    status_code: int,
    reason: str,
    remote_addr: str | None,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    """Keep a truncated copy of a request we refused. Capped and pruned by the tick."""
    with transaction.atomic():
        RejectedRequest.objects.create(
            shop=shop,
            path=path[:300],
            status_code=status_code,
            reason=reason[:300],
            remote_addr=remote_addr or None,
            headers=keepable_headers(headers),
            body_excerpt=body[:2048].decode("utf-8", errors="replace"),
            body_size=len(body),
            received_at=now,
        )
        if shop is not None:
            from django.db.models import F

            Shop.objects.filter(pk=shop.pk).update(rejected_count=F("rejected_count") + 1, last_rejected_at=now)


def prune_rejections(*, now: datetime) -> int:
    """Apply the rejected-request log's retention: an age limit and a row cap."""
    old = now - timedelta(days=settings.HERALD_REJECTED_LOG_RETENTION_DAYS)
    deleted, _ = RejectedRequest.objects.filter(received_at__lt=old).delete()
    keep = list(
        RejectedRequest.objects.order_by("-received_at", "-id").values_list("id", flat=True)[
            settings.HERALD_REJECTED_LOG_CAP : settings.HERALD_REJECTED_LOG_CAP + 1
        ]
    )
    if keep:
        more, _ = RejectedRequest.objects.filter(id__lte=keep[0]).delete()
        deleted += more
    return deleted


def tick(*, now: datetime) -> str:
    """The orders beat: re-enqueue stranded deliveries, start due WooCommerce catch-ups,
    prune the rejected-request log, and record the heartbeat."""
    from orders.catchup import enqueue_due_syncs
    from orders.heartbeat import record_tick

    requeued = reenqueue_stale_deliveries(now=now)
    syncs = enqueue_due_syncs(now=now)
    pruned = prune_rejections(now=now)
    record_tick("orders", now)
    return f"re-enqueued {requeued}, catch-ups {syncs}, pruned {pruned}"


def resolve_privacy_requests(*, request_ids: list[int], by: str, now: datetime) -> int:
    """Mark open privacy requests resolved by ``by`` (a staff username) at ``now``.

    A request resolved already keeps who resolved it and when. Returns how many were
    resolved by this call."""
    from orders.models import PrivacyRequest

    with transaction.atomic():
        return PrivacyRequest.objects.filter(pk__in=request_ids, resolved_at__isnull=True).update(
            resolved_at=now, resolved_by=by[:150]
        )
