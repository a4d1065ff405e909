from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orders.actions import tick
from orders.models import WebhookDelivery
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_redis_beat_and_inbox_backlog(client):
    shop = ShopFactory()
    WebhookDelivery.objects.create(
        shop=shop, protocol="shopify", topic="orders/create", dedupe_key="k1", body=b"{}", received_at=datetime.now(UTC)
    )
    before = client.get("/healthz").json()
    assert before["ok"] is True
    assert before["database"] == {"ok": True}
    assert before["redis"]["ok"] is True
    assert before["beat"] == {"orders": None, "channels": None, "flows": None}
    assert before["backlog"]["inbox_pending"] == 1

    tick(now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    after = client.get("/healthz").json()
    assert after["beat"]["orders"] == "2026-11-23T09:00:00+00:00"


def test_healthz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"]["ok"] is False
