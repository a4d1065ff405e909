"""Bad input never gives a 500 and never loses data."""

from __future__ import annotations

import json

import pytest

from orders.actions import replay_deliveries
from orders.models import Order, RejectedRequest, StatusMapping, WebhookDelivery
from orders.statuses import OrderStatus
from tests.conftest import fixture_bytes, load_fixture, run_pending, shopify_headers

pytestmark = pytest.mark.django_db


def test_unknown_shop_is_404(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    response = post("/webhooks/shopify/nobody/", body, **shopify_headers(shopify_shop, body, "orders/create", "e"))
    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_a_shop_posting_to_another_platforms_url_is_404(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    response = post("/webhooks/woocommerce/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e"))
    assert response.status_code == 404


def test_missing_signature_is_401_and_logged_truncated(shopify_shop, post):
    body = b"x" * 5000
    response = post("/webhooks/shopify/acme/", body, HTTP_X_SHOPIFY_TOPIC="orders/create")
    assert response.status_code == 401
    rejected = RejectedRequest.objects.get()
    assert rejected.body_size == 5000
    assert len(rejected.body_excerpt) == 2048
    assert "Missing the X-Shopify-Hmac-Sha256 header" in rejected.reason


def test_signed_delivery_without_topic_is_400(shopify_shop, post):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers(shopify_shop, body, "orders/create", "e")
    del headers["HTTP_X_SHOPIFY_TOPIC"]
    response = post("/webhooks/shopify/acme/", body, **headers)
    assert response.status_code == 400
    assert "X-Shopify-Topic" in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


def test_body_over_the_cap_is_413(shopify_shop, post, settings):
    settings.HERALD_WEBHOOK_MAX_BYTES = 1024
    body = b"{" + b" " * 2000 + b"}"
    response = post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e"))
    assert response.status_code == 413
    assert not WebhookDelivery.objects.exists()


def test_get_is_not_allowed(client, shopify_shop):
    assert client.get("/webhooks/shopify/acme/").status_code == 405


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"this is not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not an object"),
        (b'{"id": 5}', "no 'created_at'"),
        (json.dumps({"id": 5, "created_at": "yesterday-ish"}).encode(), "not a date and time"),
    ],
)
def test_signed_unreadable_body_is_stored_answered_200_and_failed_with_a_reason(shopify_shop, post, body, reason):
    response = post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e1"))
    assert response.status_code == 200
    run_pending()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert reason in delivery.error
    assert delivery.body_bytes == body


def test_failed_delivery_is_replayed_after_the_cause_is_fixed(shopify_shop, post):
    data = load_fixture("shopify", "orders_create.json")
    data["financial_status"] = "paid"
    data["total_price"] = "a lot"
    body = json.dumps(data).encode()
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e1"))
    run_pending()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "'total_price' is not an amount" in delivery.error

    # The "fix": the shop's secret was fine, the parser now reads this body. Here we
    # repair the stored body to stand in for a parser fix, then replay.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(body=fixture_bytes("shopify", "orders_create.json"))
    assert replay_deliveries(delivery_ids=[delivery.pk]) == 1
    run_pending()
    delivery.refresh_from_db()
    assert delivery.status == "processed"
    assert Order.objects.count() == 1


def test_unknown_topic_is_stored_and_failed_with_advice(shopify_shop, post):
    body = b"{}"
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "carts/update", "e1"))
    run_pending()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "'carts/update' is not one Herald processes" in delivery.error


def test_unmapped_raw_status_becomes_unknown_and_is_listed_for_staff(shopify_shop, post):
    data = load_fixture("shopify", "orders_create.json")
    data["financial_status"] = "layaway"
    body = json.dumps(data).encode()
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e1"))
    run_pending()
    order = Order.objects.get()
    assert order.status == OrderStatus.UNKNOWN
    assert order.raw_status == "layaway/unfulfilled"
    mapping = StatusMapping.objects.get(platform="shopify", raw_status="layaway/unfulfilled")
    assert mapping.status == OrderStatus.UNKNOWN
    assert mapping.first_seen_at is not None


def test_odd_but_readable_values_are_kept_with_their_reading(shopify_shop, post):
    data = load_fixture("shopify", "orders_create.json")
    data["currency"] = "XYZ"
    data["processed_at"] = "2030-01-01T00:00:00Z"
    data["updated_at"] = "2026-11-20T17:00:00"  # no time zone: read in the shop's (New York)
    data["customer"]["email"] = "not-an-email"
    data["customer"]["phone"] = "12"
    data["customer"]["id"] = 42
    data["email"] = "not-an-email"
    body = json.dumps(data).encode()
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "orders/create", "e1"))
    run_pending()
    order = Order.objects.get()
    assert order.currency == "XYZ"
    assert order.source_updated_at.isoformat() == "2026-11-20T22:00:00+00:00"
    joined = " ".join(order.problems)
    assert "Unknown currency 'XYZ'" in joined
    assert "is in the future" in joined
    assert "had no time zone" in joined
    customer = order.customer
    assert (customer.email, customer.email_raw, customer.email_valid) == ("", "not-an-email", False)
    assert (customer.phone, customer.phone_raw, customer.phone_valid) == ("", "12", False)
