"""What in the orders room needs a person, for the admin's front page."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from orders.models import PrivacyRequest, RejectedRequest, StatusMapping, WebhookDelivery
from orders.statuses import OrderStatus


def attention() -> list[tuple[str, int, str]]:
    """(what, how many, where to look) for each thing waiting on staff."""
    day_ago = timezone.now() - timedelta(days=1)
    return [
        (
            "Webhook deliveries that failed",
            WebhookDelivery.objects.filter(status=WebhookDelivery.Status.FAILED).count(),
            reverse("admin:orders_webhookdelivery_changelist") + "?status__exact=failed",
        ),
        (
            "Raw statuses not mapped",
            StatusMapping.objects.filter(status=OrderStatus.UNKNOWN).count(),
            reverse("admin:orders_statusmapping_changelist") + "?status__exact=unknown",
        ),
        (
            "Open privacy requests",
            PrivacyRequest.objects.filter(resolved_at__isnull=True).count(),
            reverse("admin:orders_privacyrequest_changelist"),
        ),
        (
            "Requests refused in the last 24 h (a wrong secret?)",
            RejectedRequest.objects.filter(received_at__gte=day_ago).count(),
            reverse("admin:orders_rejectedrequest_changelist"),
        ),
    ]
