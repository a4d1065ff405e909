"""The flows tick reads only what is due: its plan uses the partial index on resume_at, so
an idle tick costs the same with ten or ten thousand runs waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from flows.models import EndStep, FlowRun, RunStatus
from tests.factories import CustomerFactory
from tests.flow_helpers import make_flow

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_an_idle_tick_reads_the_due_runs_index_not_the_waiting_runs():
    flow = make_flow(steps=[(EndStep, {"key": "end"})], now=NOW)
    version = flow.current_version
    customer = CustomerFactory()
    FlowRun.objects.bulk_create(
        FlowRun(
            flow=flow, version=version, customer=customer, dedupe_key=f"k{i}", status=RunStatus.WAITING,
            step_key="end", resume_at=NOW + timedelta(days=7, minutes=i), started_at=NOW,
        )
        for i in range(5000)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE flows_flowrun")
    from django.db.models import Q

    due = (
        FlowRun.objects.filter(status=RunStatus.WAITING, resume_at__lte=NOW, flow__status="live")
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=NOW))
        .order_by("resume_at")
        .values_list("pk", flat=True)[:100]
    )
    plan = due.explain(analyze=True)
    assert "flow_run_due" in plan, plan
    assert "Seq Scan on flows_flowrun" not in plan, plan
    assert list(due) == []
