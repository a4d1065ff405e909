"""The ledger: one row per message, one per attempt, one per receipt event."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from channels.kinds import ChannelKind


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    UNKNOWN = "unknown", "Outcome unknown"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"


# A receipt moves a message forward only: a late "sent" never undoes "delivered".
STATUS_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.UNKNOWN: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.FAILED: 4,
    MessageStatus.BOUNCED: 4,
}


class EventKind(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class Message(models.Model):
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    alias = models.CharField(max_length=60, help_text="The CHANNEL_BACKENDS entry that sends it.")
    # A web push subscription (JSON) can exceed 500 characters.
    address = models.TextField()
    subject = models.CharField(max_length=500, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Channel extras: headers, title, link, template, ...")
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    provider_message_id = models.CharField(max_length=300, blank=True, db_index=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="Retries stop here; the message fails as expired.")
    reconcile_at = models.DateTimeField(null=True, blank=True)
    needs_decision = models.BooleanField(default=False, help_text="An unknown outcome nothing could settle.")
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The channels tick reads only what is due; idle cost does not grow with history.
            models.Index(fields=["next_attempt_at"], condition=Q(status="queued"), name="message_due"),
            models.Index(fields=["lease_until"], condition=Q(status="sending"), name="message_sending"),
            models.Index(fields=["reconcile_at"], condition=Q(status="unknown"), name="message_unknown"),
            models.Index(fields=["alias", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.address} ({self.status})"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        RETRY = "retry", "Will retry"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "No answer"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="attempt_number_once")]


class DeliveryEvent(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=14, choices=EventKind.choices)
    occurred_at = models.DateTimeField()
    provider_event_id = models.CharField(max_length=300, help_text="Receipts repeat; this makes each count once.")
    detail = models.CharField(max_length=500, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "kind", "provider_event_id"], name="delivery_event_once")
        ]


class Receipt(models.Model):
    """A provider's raw delivery receipt (or inbound opt-out), stored before it is answered."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    alias = models.CharField(max_length=60)
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    query = models.CharField(max_length=2000, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    result = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["enqueued_at"], condition=Q(status="pending"), name="receipt_pending")]

    def __str__(self) -> str:
        return f"receipt #{self.pk} for {self.alias} ({self.status})"


class RejectedReceipt(models.Model):
    """A receipt request that failed verification or could not be read: kept truncated,
    capped, for debugging a provider's configuration. Never processed."""

    alias = models.CharField(max_length=60)
    status_code = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=300)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    headers = models.JSONField(default=dict)
    body_excerpt = models.TextField(blank=True)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at"]
