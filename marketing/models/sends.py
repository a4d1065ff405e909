from __future__ import annotations

from django.db import models


class Decision(models.TextChoices):
    SENT = "sent", "Sent"
    BLOCKED = "blocked", "Blocked"
    DEFERRED = "deferred", "Deferred (not final)"


class BlockReason(models.TextChoices):
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    NEVER_SUBSCRIBED = "never_subscribed", "Never subscribed"
    SUPPRESSED = "suppressed", "Suppressed address"
    INVALID_ADDRESS = "invalid_address", "No valid address"
    CAPPED = "capped", "Frequency cap"
    CONTROL_GROUP = "control_group", "Control group"
    RENDER_ERROR = "render_error", "Template error"
    EXPIRED = "expired", "Deferred too long"
    NOT_ACTIVE = "not_active", "Campaign not active"
    NO_PROMO_CODE = "no_promo_code", "Promo pool empty"
    NON_COMPLIANT = "non_compliant", "Fails the compliance check"


class Send(models.Model):
    """The one record of why a message went or did not. Its key is unique: asking again
    with the same key returns this decision and never sends twice."""

    campaign = models.ForeignKey("marketing.Campaign", on_delete=models.PROTECT, related_name="sends")
    variant = models.ForeignKey("marketing.CampaignVariant", null=True, blank=True, on_delete=models.SET_NULL)
    customer = models.ForeignKey("orders.Customer", on_delete=models.PROTECT, related_name="sends")
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="sends")
    key = models.CharField(max_length=300, unique=True)
    channel = models.CharField(max_length=20)
    address = models.TextField(blank=True)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason = models.CharField(max_length=20, choices=BlockReason.choices, blank=True)
    detail = models.TextField(blank=True, help_text="The reason in words (which template line, which cap).")
    message = models.OneToOneField(
        "channels.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="send"
    )
    promo_code = models.ForeignKey("marketing.PromoCode", null=True, blank=True, on_delete=models.SET_NULL)
    first_deferred_at = models.DateTimeField(null=True, blank=True)
    deferred_until = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at"]
        indexes = [
            models.Index(fields=["customer", "channel", "decided_at"]),
            models.Index(fields=["campaign", "decision"]),
        ]

    def __str__(self) -> str:
        return f"{self.campaign.name} to {self.customer_id}: {self.decision} {self.reason}".strip()
