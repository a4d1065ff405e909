"""The flows room's part of ``/healthz``."""

from __future__ import annotations

from django.db.models import Count, Min, Q
from django.utils import timezone

from flows.heartbeat import last_tick
from flows.models import FlowRun, RunStatus


def check() -> dict[str, object]:
    now = timezone.now()
    due = Q(status=RunStatus.WAITING, resume_at__lte=now, flow__status="live")
    agg = FlowRun.objects.aggregate(
        due=Count("id", filter=due),
        waiting=Count("id", filter=Q(status=RunStatus.WAITING)),
        failed=Count("id", filter=Q(status=RunStatus.FAILED)),
        oldest=Min("resume_at", filter=due),
    )
    oldest = agg["oldest"]
    return {
        "beat": {"flows": last_tick("flows")},
        "backlog": {
            "runs_due": agg["due"],
            "runs_waiting": agg["waiting"],
            "runs_failed": agg["failed"],
            "runs_oldest_due_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
        },
    }
