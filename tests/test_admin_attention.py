from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.actions import send_message
from channels.models import Message
from orders.models import StatusMapping, WebhookDelivery
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db


def test_the_front_page_lists_what_waits_on_staff(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "Nothing is waiting on you" in page

    shop = ShopFactory()
    WebhookDelivery.objects.create(
        shop=shop, protocol="shopify", topic="orders/create", dedupe_key="k", body=b"x",
        status="failed", error="not JSON", received_at=datetime.now(UTC),
    )  # fmt: skip
    StatusMapping.objects.create(platform="shopify", raw_status="layaway/unfulfilled", status="unknown")
    message = send_message(kind="sms", address="+12025550143", text="hi", idempotency_key="k1")
    Message.objects.filter(pk=message.pk).update(status="unknown", needs_decision=True)

    page = admin_client.get("/admin/").content.decode()
    assert "Webhook deliveries that failed: <strong>1</strong>" in page
    assert "Raw statuses not mapped: <strong>1</strong>" in page
    assert "waiting for a decision: <strong>1</strong>" in page
    assert "/admin/orders/webhookdelivery/?status__exact=failed" in page
    assert "Nothing is waiting on you" not in page
