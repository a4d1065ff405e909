"""What in the channels room needs a person, for the admin's front page."""

from __future__ import annotations

from django.urls import reverse

from channels.models import Message, MessageStatus, Receipt


def attention() -> list[tuple[str, int, str]]:
    return [
        (
            "Messages whose outcome is unknown, waiting for a decision",
            Message.objects.filter(status=MessageStatus.UNKNOWN, needs_decision=True).count(),
            reverse("admin:channels_message_changelist") + "?status__exact=unknown",
        ),
        (
            "Receipts that could not be read",
            Receipt.objects.filter(status=Receipt.Status.FAILED).count(),
            reverse("admin:channels_receipt_changelist") + "?status__exact=failed",
        ),
    ]
