"""Steps: django-polymorphic models in order, each implementing ``execute(run, now)``.

Every step has a ``key`` that stays the same across flow versions. A step does no
network I/O: a send queues a ledger message, which a channels worker sends.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from django.core.validators import RegexValidator
from django.db import models
from polymorphic.models import PolymorphicModel

from channels.kinds import ChannelKind
from flows.results import StepResult
from orders.statuses import OrderStatus

if TYPE_CHECKING:
    from flows.models.runs import FlowRun

key_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lowercase letters, digits and dashes.")


class Step(PolymorphicModel):
    version = models.ForeignKey("flows.FlowVersion", on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(
        max_length=60,
        validators=[key_validator],
        help_text="Stays the same across versions: a run moved to a new version resumes at the step with its key.",
    )
    position = models.PositiveIntegerField(default=0)
    label = models.CharField(max_length=200, blank=True)

    type_code: ClassVar[str] = "step"

    class Meta:
        ordering = ["version", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["version", "key"], name="step_key_unique_in_version")]

    def __str__(self) -> str:
        return self.label or f"{self._meta.verbose_name} ({self.key})"

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        raise NotImplementedError

    def copy_to(self, version: models.Model) -> Step:
        """A copy of this step in another version (same key, type and settings)."""
        fields = {
            f.name: getattr(self, f.name)
            for f in self._meta.concrete_fields
            if not f.primary_key and f.name not in {"version", "polymorphic_ctype", "step_ptr"}
        }
        return type(self).objects.create(**{**fields, "version": version})


class Condition(models.Model):
    """A check. Failing ends the run, or jumps forward to ``otherwise_goto``."""

    negate = models.BooleanField(default=False, help_text="Pass when the check does NOT hold.")
    otherwise_goto = models.CharField(
        max_length=60, blank=True, help_text="Key of a LATER step to jump to when the check fails (empty: end the run)."
    )
    reason_code: ClassVar[str] = "condition"

    class Meta:
        abstract = True

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        raise NotImplementedError

    def execute(self, run: FlowRun, now: datetime) -> StepResult:
        holds, detail = self.holds(run, now)
        if holds != self.negate:
            return StepResult("next", "passed", detail)
        reason = f"condition_failed:{self.reason_code}"
        if self.otherwise_goto:
            return StepResult("goto", reason, detail, goto=self.otherwise_goto)
        return StepResult("end", reason, detail)


def _compare(left: Decimal | int, operator: str, right: Decimal | int) -> bool:
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
    }[operator]


OPERATORS = [("gt", "more than"), ("gte", "at least"), ("lt", "less than"), ("lte", "at most"), ("eq", "exactly")]


class OrderStatusCondition(Condition, Step):
    class AsOf(models.TextChoices):
        NOW = "now", "The order's status now"
        TRIGGER = "trigger", "The order's status when the flow was triggered"

    statuses = models.JSONField(default=list, help_text=f"Any of: {', '.join(OrderStatus.values)}.")
    as_of = models.CharField(
        max_length=10,
        choices=AsOf.choices,
        default=AsOf.NOW,
        help_text="Right after a trigger, 'when triggered' is usually meant: the order may already have moved on.",
    )
    reason_code = "order_status"

    class Meta:
        verbose_name = "Condition: order status is one of"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        if run.order is None:
            return False, "the run has no order"
        if self.as_of == self.AsOf.TRIGGER and run.trigger_event.get("order_status"):
            status = run.trigger_event["order_status"]
            return status in self.statuses, f"order status was {status} when triggered"
        run.order.refresh_from_db(fields=["status"])
        return run.order.status in self.statuses, f"order status is {run.order.status}"


class ContactSubscribedCondition(Condition, Step):
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    reason_code = "not_subscribed"

    class Meta:
        verbose_name = "Condition: contact valid and subscribed"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        from marketing.audience_lookup import address_for
        from marketing.consent import consent_status
        from marketing.suppression import is_suppressed

        address = address_for(run.customer, self.channel)
        if not address.valid:
            return False, address.why
        if is_suppressed(self.channel, address.value):
            return False, f"{address.value} is suppressed"
        status = consent_status(run.customer, self.channel)
        return status == "subscribed", f"{self.channel} consent: {status}"


class PlacedOrderCondition(Condition, Step):
    class Window(models.TextChoices):
        SINCE_RUN_STARTED = "since_run_started", "Since the run started"
        LAST_N_DAYS = "last_n_days", "In the last N days"

    window = models.CharField(max_length=20, choices=Window.choices, default=Window.SINCE_RUN_STARTED)
    days = models.PositiveIntegerField(default=7)
    reason_code = "placed_order"

    class Meta:
        verbose_name = "Condition: customer placed an order"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        from datetime import timedelta

        from orders.models import Order

        since = run.started_at if self.window == self.Window.SINCE_RUN_STARTED else now - timedelta(days=self.days)
        orders = Order.objects.filter(customer=run.customer, placed_at__gte=since, deleted_at__isnull=True)
        if run.order_id:
            orders = orders.exclude(pk=run.order_id)
        count = orders.count()
        return count > 0, f"{count} order(s) since {since:%Y-%m-%d %H:%M} UTC"


class OrderCountCondition(Condition, Step):
    operator = models.CharField(max_length=3, choices=OPERATORS, default="gte")
    value = models.PositiveIntegerField(default=1)
    reason_code = "order_count"

    class Meta:
        verbose_name = "Condition: number of orders"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        from orders.models import Order

        count = Order.objects.filter(customer=run.customer, deleted_at__isnull=True).count()
        return _compare(count, self.operator, self.value), f"{count} order(s)"


class OrderTotalCondition(Condition, Step):
    operator = models.CharField(max_length=3, choices=OPERATORS, default="gte")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reason_code = "order_total"

    class Meta:
        verbose_name = "Condition: order total"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        if run.order is None:
            return False, "the run has no order"
        return _compare(run.order.total, self.operator, self.amount), f"order total {run.order.total} {run.order.currency}"


class OrderContainsProductsCondition(Condition, Step):
    skus = models.JSONField(default=list, help_text="SKUs, e.g. [\"TEE-001\", \"MUG-002\"].")
    match_all = models.BooleanField(default=False, help_text="All of them (otherwise any).")
    reason_code = "order_products"

    class Meta:
        verbose_name = "Condition: order contains products"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        if run.order is None:
            return False, "the run has no order"
        present = set(run.order.lines.values_list("sku", flat=True))
        wanted = set(self.skus)
        found = wanted & present
        ok = found == wanted if self.match_all else bool(found)
        return ok, f"found {sorted(found) or 'none'} of {sorted(wanted)}"


class RegisteredAfterCondition(Condition, Step):
    after = models.DateTimeField()
    reason_code = "registered_after"

    class Meta:
        verbose_name = "Condition: customer registered after a date"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        registered = run.customer.registered_at
        if registered is None:
            return False, "the customer has not registered"
        return registered > self.after, f"registered {registered:%Y-%m-%d %H:%M} UTC"


class CustomerAttributeCondition(Condition, Step):
    class Attribute(models.TextChoices):
        TAG = "tag", "Has the tag"
        LOCALE = "locale", "Locale"
        TIMEZONE = "timezone", "Time zone"
        EMAIL_DOMAIN = "email_domain", "Email domain"
        COUNTRY = "country", "Shipping country of the order"

    attribute = models.CharField(max_length=20, choices=Attribute.choices)
    value = models.CharField(max_length=200)
    reason_code = "customer_attribute"

    class Meta:
        verbose_name = "Condition: customer attribute or tag"

    def holds(self, run: FlowRun, now: datetime) -> tuple[bool, str]:
        customer = run.customer
        wanted = self.value.strip().lower()
        if self.attribute == self.Attribute.TAG:
            from marketing.tags import customer_tags

            tags = customer_tags(customer)
            return wanted in tags, f"tags: {', '.join(tags) or 'none'}"
        actual = {
            self.Attribute.LOCALE: customer.locale,
            self.Attribute.TIMEZONE: customer.timezone,
            self.Attribute.EMAIL_DOMAIN: customer.email.rpartition("@")[2],
            self.Attribute.COUNTRY: (run.order.shipping_address.get("country_code", "") if run.order else ""),
        }[self.attribute].lower()
        return actual == wanted, f"{self.attribute} is {actual or 'empty'}"


from flows.models.step_actions import (  # noqa: E402  (the rest of the step types)
    AlertTeamStep,
    DateFieldWait,
    DelayWait,
    EndStep,
    SendCampaignStep,
    SplitStep,
    StatusRouterStep,
    TagCustomerStep,
    TimeOfDayWait,
)

__all__ = [
    "AlertTeamStep",
    "ContactSubscribedCondition",
    "CustomerAttributeCondition",
    "DateFieldWait",
    "DelayWait",
    "EndStep",
    "OrderContainsProductsCondition",
    "OrderCountCondition",
    "OrderStatusCondition",
    "OrderTotalCondition",
    "PlacedOrderCondition",
    "RegisteredAfterCondition",
    "SendCampaignStep",
    "SplitStep",
    "StatusRouterStep",
    "Step",
    "TagCustomerStep",
    "TimeOfDayWait",
]
