"""What in the flows room needs a person, for the admin's front page."""

from __future__ import annotations

from django.urls import reverse

from flows.models import FlowRun, RunStatus


def attention() -> list[tuple[str, int, str]]:
    return [
        (
            "Flow runs that failed (retry them once the cause is fixed)",
            FlowRun.objects.filter(status=RunStatus.FAILED).count(),
            reverse("admin:flows_flowrun_changelist") + "?status__exact=failed",
        ),
    ]
