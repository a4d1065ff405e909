from __future__ import annotations

from django.db import models
from django.db.models import Q


class WebhookDelivery(models.Model):
    """A raw, authenticated delivery from a shop: stored before it is answered.

    The raw bytes are kept whatever they hold, so a delivery that could not be read
    can be replayed once the parser is fixed.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    shop = models.ForeignKey("orders.Shop", on_delete=models.PROTECT, related_name="deliveries")
    protocol = models.CharField(max_length=20)
    topic = models.CharField(max_length=100)
    dedupe_key = models.CharField(max_length=300)
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    source = models.CharField(max_length=20, default="webhook", help_text="webhook, or catch-up for pulled orders.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    result = models.CharField(max_length=500, blank=True, help_text="What processing did, in a line.")
    received_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["shop", "dedupe_key"], name="delivery_dedupe")]
        indexes = [
            # The orders tick scans only what is still pending.
            models.Index(fields=["enqueued_at"], condition=Q(status="pending"), name="delivery_pending"),
            models.Index(fields=["status", "-received_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.protocol} {self.topic} #{self.pk}"

    @property
    def body_bytes(self) -> bytes:
        return bytes(self.body)


class RejectedRequest(models.Model):
    """A request that failed authentication or could not be routed; kept truncated, capped,
    for staff debugging a wrong secret. Never trusted, never processed."""

    shop = models.ForeignKey("orders.Shop", null=True, blank=True, on_delete=models.CASCADE, related_name="rejections")
    path = models.CharField(max_length=300)
    status_code = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=300)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    headers = models.JSONField(default=dict)
    body_excerpt = models.TextField(blank=True)
    body_size = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.status_code} {self.path}: {self.reason}"


class PrivacyRequest(models.Model):
    """A data-protection request from a platform (Shopify's mandatory privacy topics).
    Stored and shown to staff as open until someone handles it."""

    class Kind(models.TextChoices):
        DATA_REQUEST = "customers/data_request", "Customer data request"
        CUSTOMER_REDACT = "customers/redact", "Customer redaction"
        SHOP_REDACT = "shop/redact", "Shop redaction"

    shop = models.ForeignKey("orders.Shop", on_delete=models.CASCADE, related_name="privacy_requests")
    kind = models.CharField(max_length=40, choices=Kind.choices)
    delivery = models.OneToOneField("orders.WebhookDelivery", on_delete=models.PROTECT)
    customer = models.ForeignKey("orders.Customer", null=True, blank=True, on_delete=models.SET_NULL)
    customer_external_id = models.CharField(max_length=100, blank=True)
    email = models.CharField(max_length=320, blank=True)
    order_ids = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        # Open requests (no resolved_at) first.
        ordering = [models.F("resolved_at").asc(nulls_first=True), "-received_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.shop.slug}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
