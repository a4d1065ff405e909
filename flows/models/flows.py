from __future__ import annotations

from django.db import models
from django.db.models import Q

from orders.statuses import OrderStatus


class FlowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class TriggerKind(models.TextChoices):
    NEW_ORDER = "new_order", "New order"
    ORDER_STATUS_CHANGED = "order_status_changed", "Order status changed"
    NEW_CUSTOMER = "new_customer", "New customer"
    CUSTOMER_REGISTERED = "customer_registered", "Customer registered"
    PRODUCT_VIEWED = "product_viewed", "Product viewed"


class EntryRule(models.TextChoices):
    ONCE_PER_CUSTOMER = "once_per_customer", "Once per customer"
    ONCE_PER_ORDER = "once_per_order", "Once per order"
    EVERY_TIME = "every_time", "Every time the trigger fires"
    NOT_WITHIN_DAYS = "not_within_days", "Not again within N days"


class Flow(models.Model):
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=FlowStatus.choices, default=FlowStatus.DRAFT)
    trigger = models.CharField(max_length=30, choices=TriggerKind.choices)
    from_statuses = models.JSONField(
        default=list, blank=True, help_text="Order status changed: only from these statuses (empty: any)."
    )
    to_statuses = models.JSONField(
        default=list, blank=True, help_text="Order status changed: only into these statuses (empty: any)."
    )
    shop = models.ForeignKey(
        "orders.Shop", null=True, blank=True, on_delete=models.SET_NULL, help_text="Only events from this shop."
    )
    entry_rule = models.CharField(max_length=20, choices=EntryRule.choices, default=EntryRule.ONCE_PER_CUSTOMER)
    entry_days = models.PositiveIntegerField(default=30, help_text="For 'not again within N days'.")
    relevance_days = models.PositiveIntegerField(
        default=7, help_text="An event that happened at the shop longer ago than this starts nothing."
    )
    only_registered_after_live = models.BooleanField(
        default=False, help_text="Only customers who registered after the flow went live."
    )
    exit_on_order = models.BooleanField(
        default=False, help_text="A customer who places an order leaves the flow (waiting runs end)."
    )
    went_live_at = models.DateTimeField(null=True, blank=True)
    recipe = models.CharField(max_length=60, blank=True, help_text="The recipe it was made from.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def current_version(self) -> FlowVersion | None:
        return self.versions.filter(published_at__isnull=False).order_by("-number").first()

    @property
    def draft_version(self) -> FlowVersion | None:
        return self.versions.filter(published_at__isnull=True).order_by("-number").first()

    def statuses_match(self, old: str | None, new: str | None) -> bool:
        if self.from_statuses and (old or "") not in self.from_statuses:
            return False
        if self.to_statuses and (new or "") not in self.to_statuses:
            return False
        return True

    @staticmethod
    def status_choices() -> list[tuple[str, str]]:
        return list(OrderStatus.choices)


class FlowVersion(models.Model):
    """The steps of a flow as they were published. A run is pinned to one version;
    editing a live flow makes a draft version, published as the next number."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["flow", "number"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "number"], name="flow_version_number"),
            models.UniqueConstraint(
                fields=["flow"], condition=Q(published_at__isnull=True), name="flow_one_draft_version"
            ),
        ]

    def __str__(self) -> str:
        state = "draft" if self.published_at is None else "published"
        return f"{self.flow.name} v{self.number} ({state})"

    def ordered_steps(self) -> list[models.Model]:
        return list(self.steps.all().order_by("position", "id"))
