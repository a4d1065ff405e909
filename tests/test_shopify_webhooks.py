from __future__ import annotations

import json
from decimal import Decimal

import pytest

from orders.models import Customer, Order, OrderStatusChange, RejectedRequest, WebhookDelivery
from orders.statuses import OrderStatus
from tests.conftest import fixture_bytes, load_fixture, run_pending, shopify_headers

pytestmark = pytest.mark.django_db


def test_signed_order_is_stored_then_processed_into_order_lines_and_customer(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    response = post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "evt-1"))
    assert response.status_code == 200, response.content
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert delivery.body_bytes == body
    assert delivery.dedupe_key == "orders/create:evt-1"

    run_pending()

    delivery.refresh_from_db()
    assert delivery.status == "processed", delivery.error
    order = Order.objects.get(shop=shopify_shop, external_id="820982911946154508")
    assert order.number == "#9999"
    assert order.status == OrderStatus.PAID
    assert order.raw_status == "paid/unfulfilled"
    assert order.total == Decimal("213.94")
    assert order.shipping_total == Decimal("10.00")
    assert order.placed_at.isoformat() == "2026-11-20T21:15:47+00:00"
    assert [(line.sku, line.quantity, line.price) for line in order.lines.all()] == [
        ("IPOD2008PINK", Decimal("1.000"), Decimal("199.00"))
    ]
    customer = Customer.objects.get()
    assert order.customer == customer
    assert customer.email == "john@example.com"
    assert customer.identities.get().external_id == "115310627314723954"
    assert customer.accepts_email_marketing is False
    change = OrderStatusChange.objects.get()
    assert (change.old_status, change.new_status, change.applied) == ("", "paid", True)


def test_wrong_signature_is_401_and_kept_in_the_rejected_log(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers(shopify_shop, body, "orders/create", "evt-1")
    headers["HTTP_X_SHOPIFY_HMAC_SHA256"] = "bm90IHRoZSByaWdodCBzaWduYXR1cmU="
    response = post("/webhooks/shopify/acme/", body, **headers)
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()
    rejected = RejectedRequest.objects.get()
    assert rejected.shop == shopify_shop
    assert "does not match" in rejected.reason
    shopify_shop.refresh_from_db()
    assert shopify_shop.rejected_count == 1


def test_replayed_delivery_is_stored_once(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers(shopify_shop, body, "orders/create", "evt-1")
    first = post("/webhooks/shopify/acme/", body, **headers)
    second = post("/webhooks/shopify/acme/", body, **headers)
    assert first.json()["delivery"] == second.json()["delivery"]
    assert second.json()["duplicate"] is True
    assert WebhookDelivery.objects.count() == 1


def test_older_update_after_newer_goes_into_history_only(shopify_shop, post):
    data = load_fixture("shopify", "orders_create.json")
    newer = dict(data, financial_status="refunded", updated_at="2026-11-21T10:00:00-05:00")
    older = dict(data, financial_status="paid", fulfillment_status="fulfilled", updated_at="2026-11-20T18:00:00-05:00")
    for event_id, payload in (("evt-new", newer), ("evt-old", older)):
        body = json.dumps(payload).encode()
        post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/updated", event_id))
    run_pending()
    order = Order.objects.get()
    assert order.status == OrderStatus.REFUNDED
    history = list(OrderStatusChange.objects.values_list("new_status", "applied"))
    assert history == [("refunded", True), ("shipped", False)]
