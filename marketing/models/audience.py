"""To whom we may speak: consent per channel, the suppression list, and our tags."""

from __future__ import annotations

from django.db import models

from channels.kinds import ChannelKind


class ConsentStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    NEVER_ASKED = "never_asked", "Never asked"


class ConsentSource(models.TextChoices):
    SHOP = "shop", "Reported by the shop"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link"
    PREFERENCE_PAGE = "preference_page", "Preference page"
    PROVIDER = "provider", "Provider opt-out (STOP, complaint, dead token)"
    STAFF = "staff", "Staff"
    IMPORT = "import", "Import"


class Consent(models.Model):
    """A customer's marketing consent in one channel: the current state."""

    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    status = models.CharField(max_length=14, choices=ConsentStatus.choices, default=ConsentStatus.NEVER_ASKED)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    changed_at = models.DateTimeField()
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "channel"], name="consent_one_per_channel")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.channel}: {self.status}"


class ConsentEvent(models.Model):
    """Every change of consent, for the record (GDPR asks when and how)."""

    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="consent_events")
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    old_status = models.CharField(max_length=14, choices=ConsentStatus.choices, blank=True)
    new_status = models.CharField(max_length=14, choices=ConsentStatus.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    detail = models.CharField(max_length=300, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-occurred_at"]


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Spam complaint"
    OPTED_OUT = "opted_out", "Opted out at the provider (STOP)"
    INVALID_ADDRESS = "invalid_address", "Invalid address"
    UNREGISTERED = "unregistered", "Push token unregistered"
    MANUAL = "manual", "Added by staff"
    IMPORT = "import", "Imported"


class Suppression(models.Model):
    """An address, phone number or domain pattern (``*@example.com``) we never write to,
    transactional or not. Channel empty: every channel."""

    value = models.TextField(help_text="An email, an E.164 number, a token or subscription, or *@domain.")
    channel = models.CharField(max_length=20, choices=ChannelKind.choices, blank=True)
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["value", "channel"], name="suppression_unique")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.value} ({self.channel or 'all channels'}: {self.reason})"


class Tag(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class CustomerTag(models.Model):
    """Our tag on a customer (the shop's own fields never overwrite these)."""

    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="customers")
    source = models.CharField(max_length=100, help_text="staff:<username> or flow:<flow id>")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "tag"], name="customer_tag_once")]


class ContactPoint(models.Model):
    """An address in a channel the shop does not tell us: a push token or subscription,
    a Telegram chat id, a Viber/Messenger/LINE user id. Email and phone live on the
    customer (the shop's mirror)."""

    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="contact_points")
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    address = models.TextField(help_text="Token, user id, or a web push subscription as JSON.")
    is_valid = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "address"], name="contact_point_unique")]
        indexes = [models.Index(fields=["customer", "channel", "-updated_at"])]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address[:40]}"
