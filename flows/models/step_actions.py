"""Waits, actions and splits."""

from __future__ import annotations

import hashlib
import zoneinfo
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from django.db import models

from flows.localtime import localize, next_time_of_day
from flows.models.steps import Step
from flows.results import StepResult

if TYPE_CHECKING:
    from flows.models.runs import FlowRun


def run_zone(run: FlowRun) -> zoneinfo.ZoneInfo:
    """The customer's time zone, else the shop's, else UTC."""
    if run.customer.zone is not None:
        return run.customer.zone
    if run.order is not None:
        return run.order.shop.zone
    return zoneinfo.ZoneInfo("UTC")


class DelayWait(Step):
    minutes = models.PositiveIntegerField(help_text="1 hour = 60, 1 day = 1440, 1 week = 10080.")

    class Meta:
        verbose_name = "Wait: a fixed delay"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        until = now + timedelta(minutes=self.minutes)
        return StepResult("wait", "waited_until", f"until {until:%Y-%m-%d %H:%M} UTC", resume_at=until)


class TimeOfDayWait(Step):
    at = models.TimeField(default=time(10, 0), help_text="Local time in the customer's time zone (else the shop's).")
    weekdays = models.JSONField(
        default=list, blank=True, help_text="0 = Monday ... 6 = Sunday; empty means any day. Weekdays: [0,1,2,3,4]."
    )

    class Meta:
        verbose_name = "Wait: until a time of day"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        zone = run_zone(run)
        until = next_time_of_day(now, zone, self.at, [int(d) for d in self.weekdays])
        local = until.astimezone(zone)
        return StepResult("wait", "waited_until", f"until {local:%a %Y-%m-%d %H:%M} {zone.key}", resume_at=until)


class DateFieldWait(Step):
    class Field(models.TextChoices):
        ORDER_PLACED = "order.placed_at", "The order was placed"
        CUSTOMER_REGISTERED = "customer.registered_at", "The customer registered"
        RUN_STARTED = "run.started_at", "The run started"

    field = models.CharField(max_length=40, choices=Field.choices)
    offset_days = models.IntegerField(default=0, help_text="Days after (negative: before) the date.")
    at = models.TimeField(null=True, blank=True, help_text="Optional local time of day on that date.")

    class Meta:
        verbose_name = "Wait: until a date from the order or customer"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        base = {
            self.Field.ORDER_PLACED: run.order.placed_at if run.order else None,
            self.Field.CUSTOMER_REGISTERED: run.customer.registered_at,
            self.Field.RUN_STARTED: run.started_at,
        }[self.field]
        if base is None:
            return StepResult("next", "date_missing", f"{self.field} is empty; not waiting")
        zone = run_zone(run)
        target_day = base.astimezone(zone).date() + timedelta(days=self.offset_days)
        until = localize(target_day, self.at, zone) if self.at else base + timedelta(days=self.offset_days)
        if until <= now:
            return StepResult("next", "date_passed", f"{until:%Y-%m-%d %H:%M} UTC has passed")
        return StepResult("wait", "waited_until", f"until {until:%Y-%m-%d %H:%M} UTC", resume_at=until)


class SendCampaignStep(Step):
    campaign = models.ForeignKey("marketing.Campaign", on_delete=models.PROTECT, related_name="+")

    class Meta:
        verbose_name = "Action: send a campaign"

    def send_key(self, run: FlowRun) -> str:
        return f"flowrun:{run.pk}:{self.key}"

    def execute(self, run: FlowRun, now: datetime, dry_run: bool = False) -> StepResult:
        from marketing.actions import Blocked, Deferred, SendContext, send_campaign

        verdict = send_campaign(
            campaign=self.campaign,
            customer=run.customer,
            context=SendContext(order=run.order, event=dict(run.trigger_event)),
            key=self.send_key(run),
            now=now,
            dry_run=dry_run,
        )
        if isinstance(verdict, Deferred):
            return StepResult("defer", "send_deferred", verdict.why, resume_at=verdict.until, send=verdict.send)
        if isinstance(verdict, Blocked):
            return StepResult("next", "send_blocked", verdict.reason, send=verdict.send)
        return StepResult("next", "sent", "", send=verdict.send)


class AlertTeamStep(Step):
    alias = models.CharField(max_length=60, help_text="A CHANNEL_BACKENDS alias (an email account, a team chat).")
    address = models.CharField(max_length=500, help_text="The team's address in that channel.")
    subject = models.CharField(max_length=300, blank=True)
    text = models.TextField(help_text="A template: {{ order.number }}, {{ recipient.full_name }}, ...")

    class Meta:
        verbose_name = "Action: alert the team"

    def execute(self, run: FlowRun, now: datetime, dry_run: bool = False) -> StepResult:
        from channels.actions import send_message
        from channels.registry import backends
        from marketing.context import build_context
        from marketing.rendering import TemplateProblem, render_text

        shop = run.order.shop if run.order else None
        context = build_context(customer=run.customer, shop=shop, order=run.order, now=now, event=dict(run.trigger_event))
        try:
            subject = render_text(self.subject, context, name="the alert subject") if self.subject else ""
            text = render_text(self.text, context, name="the alert text")
        except TemplateProblem as problem:
            return StepResult("next", "alert_render_error", str(problem)[:500])
        if dry_run:
            return StepResult("next", "alerted", f"would alert {self.address}")
        send_message(
            kind=backends.kind_of(self.alias),
            alias=self.alias,
            address=self.address,
            subject=subject,
            text=text,
            idempotency_key=f"flowrun:{run.pk}:{self.key}:alert",
            data={"flow": run.flow_id, "run": run.pk},
            now=now,
        )
        return StepResult("next", "alerted", f"alerted {self.address}")


class TagCustomerStep(Step):
    tag = models.CharField(max_length=100)
    remove = models.BooleanField(default=False, help_text="Remove the tag instead.")

    class Meta:
        verbose_name = "Action: tag the customer"

    def execute(self, run: FlowRun, now: datetime, dry_run: bool = False) -> StepResult:
        from marketing.tags import tag_customer, untag_customer

        if dry_run:
            return StepResult("next", "tagged", f"would {'untag' if self.remove else 'tag'} {self.tag}")
        action = untag_customer if self.remove else tag_customer
        changed = action(customer=run.customer, tag_name=self.tag, source=f"flow:{run.flow_id}", now=now)
        return StepResult("next", "untagged" if self.remove else "tagged", self.tag if changed else f"{self.tag} (no change)")


class SplitStep(Step):
    """A random split into weighted paths, sticky per customer, with a holdout."""

    paths = models.JSONField(
        default=list, help_text='Paths as [{"name": "A", "weight": 50, "goto": "step-key"}, ...]; each goto is a later step.'
    )
    holdout_percent = models.PositiveSmallIntegerField(default=0, help_text="Percent who leave the flow here.")

    class Meta:
        verbose_name = "Split: random weighted paths"

    def bucket(self, run: FlowRun, salt: str) -> float:
        digest = hashlib.sha256(f"{salt}:{run.flow_id}:{self.key}:{run.customer_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        if self.holdout_percent and self.bucket(run, "holdout") * 100 < self.holdout_percent:
            return StepResult("exit", "holdout", f"held out ({self.holdout_percent}%)")
        paths = [p for p in self.paths if int(p.get("weight", 0)) > 0]
        if not paths:
            return StepResult("next", "split_empty", "no path has weight")
        point = self.bucket(run, "path") * sum(int(p["weight"]) for p in paths)
        for path in paths:
            point -= int(path["weight"])
            if point < 0:
                break
        return StepResult("goto", f"split:{path.get('name', '')}", "", goto=str(path["goto"]))


class EndStep(Step):
    """Ends the run here (after one branch of a status router, say)."""

    class Meta:
        verbose_name = "End the run"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        return StepResult("end", "ended", self.label)


class StatusRouterStep(Step):
    """Jumps forward to the step for the order's current status."""

    routes = models.JSONField(
        default=dict, help_text='Canonical status -> key of a later step, e.g. {"shipped": "send-shipped"}.'
    )
    otherwise_goto = models.CharField(max_length=60, blank=True, help_text="For other statuses (empty: end the run).")

    class Meta:
        verbose_name = "Route by order status"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        if run.order is None:
            return StepResult("end", "condition_failed:no_order", "the run has no order")
        run.order.refresh_from_db(fields=["status"])
        target = self.routes.get(run.order.status) or self.otherwise_goto
        if not target:
            return StepResult("end", "condition_failed:order_status", f"no route for {run.order.status}")
        return StepResult("goto", f"routed:{run.order.status}", "", goto=target)
