from __future__ import annotations

from django.db import models

from orders.models.shops import Platform
from orders.statuses import OrderStatus


class Order(models.Model):
    shop = models.ForeignKey("orders.Shop", on_delete=models.PROTECT, related_name="orders")
    external_id = models.CharField(max_length=100)
    number = models.CharField(max_length=100, blank=True)
    customer = models.ForeignKey(
        "orders.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    email = models.CharField(max_length=320, blank=True, help_text="As given on the order.")
    status = models.CharField(max_length=32, choices=OrderStatus.choices, default=OrderStatus.UNKNOWN, db_index=True)
    raw_status = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=8, blank=True)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    shipping_total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    tax_total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    discount_total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    placed_at = models.DateTimeField(help_text="When the order was placed at the shop (may be long ago).")
    source_updated_at = models.DateTimeField(help_text="The shop's own modification time of the newest state applied.")
    shipping_address = models.JSONField(default=dict, blank=True)
    tracking_number = models.CharField(max_length=200, blank=True)
    carrier = models.CharField(max_length=200, blank=True)
    tracking_url = models.URLField(max_length=1000, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="The shop deleted the order.")
    problems = models.JSONField(
        default=list, blank=True, help_text="Odd input we accepted and how we read it (unknown currency, future date, ...)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["shop", "external_id"], name="order_unique_per_shop")]
        indexes = [models.Index(fields=["customer", "placed_at"])]
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return f"Order {self.number or self.external_id} ({self.shop.slug})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    external_id = models.CharField(max_length=100, blank=True)
    product = models.ForeignKey("orders.Product", null=True, blank=True, on_delete=models.SET_NULL)
    sku = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=12, decimal_places=3, default=1)
    price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    image_url = models.URLField(max_length=1000, blank=True)
    url = models.URLField(max_length=1000, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.name}"


class OrderStatusChange(models.Model):
    """The history of an order's status. ``applied`` is False for an update that arrived
    after a newer one: it is history only and triggered nothing."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    old_status = models.CharField(max_length=32, blank=True, choices=OrderStatus.choices)
    new_status = models.CharField(max_length=32, choices=OrderStatus.choices)
    old_raw_status = models.CharField(max_length=200, blank=True)
    new_raw_status = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(help_text="When it changed at the shop.")
    recorded_at = models.DateTimeField(auto_now_add=True)
    applied = models.BooleanField(default=True)
    delivery = models.ForeignKey("orders.WebhookDelivery", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.old_status or '-'} -> {self.new_status}"


class StatusMapping(models.Model):
    """One platform's raw status and the canonical status it means. Editable by staff."""

    platform = models.CharField(max_length=20, choices=Platform.choices)
    raw_status = models.CharField(max_length=200)
    status = models.CharField(max_length=32, choices=OrderStatus.choices, default=OrderStatus.UNKNOWN)
    first_seen_at = models.DateTimeField(null=True, blank=True, help_text="Set when a shop sent a status no row mapped.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "raw_status"], name="status_mapping_unique")]
        ordering = ["platform", "raw_status"]

    def __str__(self) -> str:
        return f"{self.platform}: {self.raw_status} -> {self.status}"
