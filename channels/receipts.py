"""Provider receipts: ``/channels/receipts/<alias>/``.

A backend that takes receipts implements three hooks (see ``ReceiptsMixin``):

- ``verify_receipt(request)``: check the provider's signature on the raw bytes; raise
  ``ReceiptRejected(status, reason)``;
- ``receipt_handshake(request)``: answer a provider's subscription check (a GET with a
  challenge), or None;
- ``parse_receipt(headers, body, query)``: the events in a stored receipt, as
  ``ReceiptEvent``s; raise ``ReceiptUnreadable``.

The view stores the raw receipt and answers; a task maps it onto ledger events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from channels import signals
from channels.actions import record_event
from channels.models import Message, Receipt, RejectedReceipt
from channels.registry import InvalidChannelBackend, backends

log = logging.getLogger(__name__)

MAX_RECEIPT_BYTES = 1024 * 1024
# A receipt can arrive before the send that it is about has recorded the provider's id.
WAIT_FOR_MESSAGE = timedelta(hours=1)
REENQUEUE_AFTER = timedelta(seconds=60)


class ReceiptRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ReceiptUnreadable(Exception):
    pass


@dataclass
class ReceiptEvent:
    """One thing a receipt says. Either about a message we sent (``provider_message_id``)
    or, for an inbound opt-out (SMS STOP), about an address (``opt_out_address``)."""

    kind: str = ""
    provider_message_id: str = ""
    occurred_at: datetime | None = None
    provider_event_id: str = ""
    detail: str = ""
    address_dead: str | None = None
    opt_out_address: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class ReceiptsMixin:
    """Receipt hooks for a backend; a backend without receipts leaves them out."""

    takes_receipts = True

    def verify_receipt(self, request: HttpRequest, body: bytes) -> None:
        raise NotImplementedError

    def receipt_handshake(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        raise NotImplementedError


def _keep_headers(request: HttpRequest) -> dict[str, str]:
    return {k: v[:1000] for k, v in request.headers.items() if k.lower() not in {"cookie", "authorization"}}


def _reject(alias: str, request: HttpRequest, body: bytes, status: int, reason: str) -> JsonResponse:
    RejectedReceipt.objects.create(
        alias=alias[:60],
        status_code=status,
        reason=reason[:300],
        remote_addr=request.META.get("REMOTE_ADDR") or None,
        headers=_keep_headers(request),
        body_excerpt=body[:2048].decode("utf-8", errors="replace"),
        received_at=timezone.now(),
    )
    return JsonResponse({"error": reason}, status=status)


@csrf_exempt
def receipt_view(request: HttpRequest, alias: str) -> HttpResponse:
    try:
        backend = backends[alias]
    except InvalidChannelBackend:
        return JsonResponse({"error": f"No channel backend {alias!r} takes receipts here."}, status=404)
    if not getattr(backend, "takes_receipts", False):
        return JsonResponse({"error": f"The channel backend {alias!r} takes no receipts."}, status=404)
    if request.method == "GET":
        answer = backend.receipt_handshake(request)
        if answer is not None:
            return answer
        if not getattr(backend, "receipts_by_get", False):
            return JsonResponse({"error": "POST receipts here."}, status=405)
    elif request.method != "POST":
        return JsonResponse({"error": "POST receipts here."}, status=405)
    body = request.read(MAX_RECEIPT_BYTES + 1)
    if len(body) > MAX_RECEIPT_BYTES:
        return _reject(alias, request, body, 413, f"Body larger than {MAX_RECEIPT_BYTES} bytes.")
    try:
        backend.verify_receipt(request, body)
    except ReceiptRejected as rejected:
        return _reject(alias, request, body, rejected.status, rejected.reason)
    now = timezone.now()
    with transaction.atomic():
        receipt = Receipt.objects.create(
            alias=alias,
            headers=_keep_headers(request),
            body=body,
            query=_stored_query(request),
            received_at=now,
            enqueued_at=now,
        )
        transaction.on_commit(lambda: enqueue_receipt(receipt.pk))
    return getattr(backend, "receipt_answer", lambda: JsonResponse({"ok": True}))()


def _stored_query(request: HttpRequest) -> str:
    """The query string without credentials (a receipt token in ``?token=``)."""
    from urllib.parse import urlencode

    pairs = [(k, v) for k, values in request.GET.lists() for v in values if k.lower() not in {"token", "secret", "key"}]
    return urlencode(pairs)[:2000]


def enqueue_receipt(receipt_id: int) -> None:
    from channels.tasks import process_receipt_task

    try:
        process_receipt_task.apply_async(args=[receipt_id], retry=True, retry_policy={"max_retries": 0})
    except Exception as exc:
        log.warning("Could not enqueue receipt %s (%s); the channels tick will retry.", receipt_id, exc)


def process_receipt(*, receipt_id: int, now: datetime | None = None) -> str:
    """Map a stored receipt onto ledger events. Idempotent: each event counts once."""
    now = now or timezone.now()
    with transaction.atomic():
        receipt = Receipt.objects.select_for_update(skip_locked=True).filter(pk=receipt_id, status="pending").first()
        if receipt is None:
            return "not pending"
        receipt.attempts += 1
        try:
            backend = backends[receipt.alias]
            events = backend.parse_receipt(receipt.headers, bytes(receipt.body), receipt.query)
        except (ReceiptUnreadable, InvalidChannelBackend) as exc:
            return _finish(receipt, now, failed=str(exc))
        waiting, done = [], []
        for event in events:
            if event.opt_out_address:
                kind = backends.kind_of(receipt.alias)
                dead = {"kind": kind, "address": event.opt_out_address, "reason": "opted_out"}
                transaction.on_commit(
                    lambda dead=dead, detail=event.detail: signals.address_dead.send(
                        Message, **dead, detail=detail, message=None
                    )
                )
                done.append(f"opt-out from {event.opt_out_address}")
                continue
            message = Message.objects.filter(alias=receipt.alias, provider_message_id=event.provider_message_id).first()
            if message is None and event.provider_message_id:
                waiting.append(event.provider_message_id)
                continue
            if message is None:
                continue
            recorded = record_event(
                message=message,
                kind=event.kind,
                occurred_at=event.occurred_at or now,
                provider_event_id=event.provider_event_id or f"{event.kind}:{receipt.pk}",
                raw=event.raw,
                detail=event.detail,
                address_dead=event.address_dead,
            )
            done.append(f"{event.kind} for message {message.pk}" + ("" if recorded else " (already recorded)"))
        if waiting and now - receipt.received_at < WAIT_FOR_MESSAGE:
            receipt.error = f"Waiting for the send of provider message {', '.join(waiting)} to be recorded."
            receipt.save(update_fields=["attempts", "error"])
            return receipt.error
        if waiting:
            done.append(f"no message of ours for provider id {', '.join(waiting)}")
        return _finish(receipt, now, result="; ".join(done) or "nothing to record")


def _finish(receipt: Receipt, now: datetime, *, result: str = "", failed: str = "") -> str:
    receipt.status = Receipt.Status.FAILED if failed else Receipt.Status.PROCESSED
    receipt.error = failed[:4000]
    receipt.result = result[:500]
    receipt.processed_at = now
    receipt.save(update_fields=["status", "error", "result", "processed_at", "attempts"])
    return f"failed: {failed}" if failed else result


def reenqueue_receipts(*, now: datetime, batch: int = 200) -> int:
    with transaction.atomic():
        ids = list(
            Receipt.objects.select_for_update(skip_locked=True)
            .filter(status="pending", enqueued_at__lt=now - REENQUEUE_AFTER)
            .values_list("pk", flat=True)[:batch]
        )
        if ids:
            Receipt.objects.filter(pk__in=ids).update(enqueued_at=now)
            for receipt_id in ids:
                transaction.on_commit(lambda receipt_id=receipt_id: enqueue_receipt(receipt_id))
    return len(ids)


def prune_rejected_receipts(*, now: datetime) -> int:
    keep_days = getattr(settings, "HERALD_REJECTED_LOG_RETENTION_DAYS", 14)
    cap = getattr(settings, "HERALD_REJECTED_LOG_CAP", 1000)
    deleted, _ = RejectedReceipt.objects.filter(received_at__lt=now - timedelta(days=keep_days)).delete()
    boundary = list(RejectedReceipt.objects.order_by("-received_at", "-id").values_list("id", flat=True)[cap : cap + 1])
    if boundary:
        more, _ = RejectedReceipt.objects.filter(id__lte=boundary[0]).delete()
        deleted += more
    return deleted
