from __future__ import annotations

from django.db import models
from django.db.models import Q


class RunStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Exited"
    FAILED = "failed", "Failed"


class FlowRun(models.Model):
    """One customer's journey through one flow, pinned to the version it started on."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="runs")
    # RESTRICT: a version with runs cannot be deleted alone, but deleting the flow takes both.
    version = models.ForeignKey("flows.FlowVersion", on_delete=models.RESTRICT, related_name="runs")
    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="flow_runs")
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="flow_runs")
    dedupe_key = models.CharField(max_length=200, help_text="Enforces the entry rule: unique per flow.")
    trigger_event = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.ACTIVE)
    step_key = models.CharField(max_length=60, blank=True, help_text="The step to run next (empty: the first).")
    resume_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["flow", "dedupe_key"], name="flow_run_entry_once")]
        indexes = [
            # The flows tick claims due runs from here; its cost when nothing is due does
            # not grow with the number of waiting runs.
            models.Index(fields=["resume_at"], condition=Q(status="waiting"), name="flow_run_due"),
            models.Index(fields=["lease_until"], condition=Q(status="active"), name="flow_run_active"),
            models.Index(fields=["customer", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.flow.name} for customer {self.customer_id} ({self.status})"


class FlowEntry(models.Model):
    """When a customer last entered a flow: locked FOR UPDATE for "not again within N days"."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="entries")
    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="+")
    last_entered_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flow", "customer"], name="flow_entry_once")]


class SkippedEntry(models.Model):
    """An event that matched a flow's trigger but started no run, and why."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="skipped_entries")
    event_id = models.CharField(max_length=200)
    customer = models.ForeignKey("orders.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=60)
    detail = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "skipped entries"
        constraints = [models.UniqueConstraint(fields=["flow", "event_id"], name="skipped_entry_once")]


class StepLog(models.Model):
    """One row per step executed: the customer's journey. A send points at marketing's
    send record, which holds the sent or blocked verdict and its reason."""

    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="log")
    step_key = models.CharField(max_length=60)
    step_type = models.CharField(max_length=60)
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=100, help_text="passed, condition_failed:order_status, waited_until, ...")
    detail = models.CharField(max_length=500, blank=True)
    send = models.ForeignKey("marketing.Send", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "executed_at", "id"]
        indexes = [models.Index(fields=["run", "step_key"])]
