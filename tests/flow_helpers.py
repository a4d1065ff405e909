"""Building flows in tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from flows.actions import activate_flow, draft_version
from flows.models import Flow, FlowVersion


def make_flow(*, trigger: str = "new_order", steps: list[tuple[type, dict[str, Any]]], live: bool = True,
              now: datetime | None = None, **fields: Any) -> Flow:  # fmt: skip
    """A flow with the given steps (class, fields) in order, keyed by their "key" field."""
    flow = Flow.objects.create(name=fields.pop("name", "Test flow"), trigger=trigger, **fields)
    version = draft_version(flow=flow)
    add_steps(version, steps)
    if live:
        problems = activate_flow(flow=flow, now=now or timezone.now())
        assert not problems, problems
    flow.refresh_from_db()
    return flow


def add_steps(version: FlowVersion, steps: list[tuple[type, dict[str, Any]]]) -> None:
    for position, (step_class, values) in enumerate(steps):
        step_class.objects.create(version=version, position=(position + 1) * 10, **values)
