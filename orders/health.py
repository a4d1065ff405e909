"""The orders room's part of ``/healthz``: its beat heartbeat and the inbox backlog."""

from __future__ import annotations

from django.db.models import Count, Min, Q
from django.utils import timezone

from orders.heartbeat import last_tick
from orders.models import WebhookDelivery


def check() -> dict[str, object]:
    pending = Q(status=WebhookDelivery.Status.PENDING)
    agg = WebhookDelivery.objects.aggregate(
        pending=Count("id", filter=pending),
        failed=Count("id", filter=Q(status=WebhookDelivery.Status.FAILED)),
        oldest=Min("received_at", filter=pending),
    )
    oldest = agg["oldest"]
    return {
        "beat": {"orders": last_tick("orders")},
        "backlog": {
            "inbox_pending": agg["pending"],
            "inbox_failed": agg["failed"],
            "inbox_oldest_pending_seconds": round((timezone.now() - oldest).total_seconds(), 1) if oldest else 0,
        },
    }
