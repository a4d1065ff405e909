"""The channels room's part of ``/healthz``."""

from __future__ import annotations

from django.db.models import Count, Min, Q
from django.utils import timezone

from channels.heartbeat import last_tick
from channels.models import Message, MessageStatus


def check() -> dict[str, object]:
    now = timezone.now()
    agg = Message.objects.aggregate(
        due=Count("id", filter=Q(status=MessageStatus.QUEUED, next_attempt_at__lte=now)),
        unknown=Count("id", filter=Q(status=MessageStatus.UNKNOWN)),
        decisions=Count("id", filter=Q(status=MessageStatus.UNKNOWN, needs_decision=True)),
        oldest=Min("next_attempt_at", filter=Q(status=MessageStatus.QUEUED, next_attempt_at__lte=now)),
    )
    oldest = agg["oldest"]
    return {
        "beat": {"channels": last_tick("channels")},
        "backlog": {
            "messages_due": agg["due"],
            "messages_unknown": agg["unknown"],
            "messages_needing_decision": agg["decisions"],
            "messages_oldest_due_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
        },
    }
