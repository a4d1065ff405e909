from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from orders.models import (
    Customer,
    CustomerIdentity,
    Order,
    OrderStatusChange,
    Platform,
    RejectedRequest,
    Shop,
    WebhookDelivery,
)
from orders.statuses import OrderStatus
from tests.conftest import fixture_bytes, load_fixture, run_pending, woocommerce_headers
from tests.factories import CustomerFactory, ShopFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/woocommerce/corner/"


@pytest.fixture
def shop(db: None) -> Shop:
    return ShopFactory(
        slug="corner", platform=Platform.WOOCOMMERCE, webhook_secret="wc-secret-7Hq!x", timezone="America/New_York"
    )


def deliver(post: Any, shop: Shop, body: bytes, topic: str, delivery_id: str = "") -> Any:
    headers = woocommerce_headers(shop, body, topic)
    if delivery_id:
        headers["HTTP_X_WC_WEBHOOK_DELIVERY_ID"] = delivery_id
    return post(URL, body, **headers)


def as_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def test_signed_order_created_is_stored_then_processed_into_order_lines_and_customer(shop, post):
    body = fixture_bytes("woocommerce", "order.created.json")
    response = deliver(post, shop, body, "order.created")
    assert response.status_code == 200, response.content
    assert response.json()["stored"] is True
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.topic, delivery.source) == ("pending", "order.created", "webhook")
    assert delivery.body_bytes == body
    assert delivery.dedupe_key == "order:727:2026-11-20T21:15:49Z"

    run_pending()

    delivery.refresh_from_db()
    assert delivery.status == "processed", delivery.error
    order = Order.objects.get(shop=shop, external_id="727")
    assert order.number == "727"
    assert (order.raw_status, order.status) == ("processing", OrderStatus.PAID)
    assert (order.subtotal, order.discount_total, order.shipping_total, order.tax_total, order.total) == (
        Decimal("51.00"),
        Decimal("5.00"),
        Decimal("10.00"),
        Decimal("3.22"),
        Decimal("59.22"),
    )
    assert order.placed_at == datetime(2026, 11, 20, 21, 15, 47, tzinfo=UTC)
    assert order.source_updated_at == datetime(2026, 11, 20, 21, 15, 49, tzinfo=UTC)
    assert order.problems == []
    assert [(li.sku, li.quantity, li.price, li.total, li.product.external_id) for li in order.lines.all()] == [
        ("woo-beanie", Decimal("2.000"), Decimal("16.20"), Decimal("32.40"), "93"),
        ("woo-hoodie-blue", Decimal("1.000"), Decimal("13.60"), Decimal("13.60"), "22"),
    ]
    assert order.shipping_address == {
        "name": "John Doe",
        "address1": "42 State St",
        "address2": "Apt 3",
        "city": "Albany",
        "province": "NY",
        "zip": "12207",
        "country": "United States",
        "country_code": "US",
    }
    customer = Customer.objects.get()
    assert order.customer == customer
    assert (customer.email, customer.phone, customer.first_name) == ("john.doe@example.com", "+15185550143", "John")
    assert customer.identities.get().external_id == "26"
    change = OrderStatusChange.objects.get()
    assert (change.old_status, change.new_status, change.new_raw_status, change.applied) == (
        "",
        "paid",
        "processing",
        True,
    )


def test_later_order_updated_changes_the_status_and_records_the_change(shop, post):
    deliver(post, shop, fixture_bytes("woocommerce", "order.created.json"), "order.created")
    deliver(post, shop, fixture_bytes("woocommerce", "order.updated.json"), "order.updated")
    run_pending()

    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"processed"}
    order = Order.objects.get()
    assert (order.raw_status, order.status) == ("completed", OrderStatus.COMPLETED)
    assert order.source_updated_at == datetime(2026, 11, 22, 14, 30, 12, tzinfo=UTC)
    history = list(OrderStatusChange.objects.order_by("id").values_list("old_status", "new_status", "applied"))
    assert history == [("", "paid", True), ("paid", "completed", True)]


def test_same_update_delivered_twice_with_different_delivery_ids_is_stored_once(shop, post):
    body = fixture_bytes("woocommerce", "order.updated.json")
    first = deliver(post, shop, body, "order.updated", delivery_id="9f0e3c7a1b2d4e5f60718293a4b5c6d7")
    second = deliver(post, shop, body, "order.updated", delivery_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert first.json()["delivery"] == second.json()["delivery"]
    assert WebhookDelivery.objects.count() == 1


def test_created_and_updated_carrying_the_same_state_are_stored_once(shop, post):
    body = fixture_bytes("woocommerce", "order.created.json")
    deliver(post, shop, body, "order.created")
    response = deliver(post, shop, body, "order.updated")
    assert response.json()["duplicate"] is True
    assert WebhookDelivery.objects.get().topic == "order.created"


def test_ping_sent_when_the_webhook_is_saved_is_answered_200_and_stores_nothing(shop, post):
    response = post(URL, b"webhook_id=12", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "stored": False}
    assert not WebhookDelivery.objects.exists()
    assert not RejectedRequest.objects.exists()


@pytest.mark.parametrize(
    "signature",
    [None, "bm90IHRoZSByaWdodCBzaWduYXR1cmU=", "signed-with-another-secret"],
    ids=["missing", "garbage", "other-secret"],
)
def test_missing_or_wrong_signature_is_401_and_kept_in_the_rejected_log(shop, post, signature):
    body = fixture_bytes("woocommerce", "order.created.json")
    headers = woocommerce_headers(shop, body, "order.created")
    if signature is None:
        del headers["HTTP_X_WC_WEBHOOK_SIGNATURE"]
    elif signature == "signed-with-another-secret":
        headers["HTTP_X_WC_WEBHOOK_SIGNATURE"] = base64.b64encode(
            hmac.new(b"another-secret", body, hashlib.sha256).digest()
        ).decode()
    else:
        headers["HTTP_X_WC_WEBHOOK_SIGNATURE"] = signature
    response = post(URL, body, **headers)
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()
    rejected = RejectedRequest.objects.get()
    assert rejected.shop == shop
    assert "X-WC-Webhook-Signature" in rejected.reason
    shop.refresh_from_db()
    assert shop.rejected_count == 1


def test_valid_signature_without_a_topic_is_400_and_stores_nothing(shop, post):
    body = fixture_bytes("woocommerce", "order.created.json")
    headers = woocommerce_headers(shop, body, "order.created")
    del headers["HTTP_X_WC_WEBHOOK_TOPIC"]
    response = post(URL, body, **headers)
    assert response.status_code == 400
    assert "X-WC-Webhook-Topic" in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


def test_older_update_after_newer_goes_into_history_only(shop, post):
    deliver(post, shop, fixture_bytes("woocommerce", "order.updated.json"), "order.updated")
    deliver(post, shop, fixture_bytes("woocommerce", "order.created.json"), "order.updated")
    run_pending()

    order = Order.objects.get()
    assert (order.raw_status, order.status) == ("completed", OrderStatus.COMPLETED)
    assert order.source_updated_at == datetime(2026, 11, 22, 14, 30, 12, tzinfo=UTC)
    history = list(OrderStatusChange.objects.order_by("id").values_list("new_status", "applied"))
    assert history == [("completed", True), ("paid", False)]


def test_guest_order_joins_the_existing_customer_with_that_email(shop, post):
    existing = CustomerFactory(email="mary.major@example.com")
    deliver(post, shop, fixture_bytes("woocommerce", "order.created.guest.json"), "order.created")
    run_pending()

    order = Order.objects.get(external_id="731")
    assert order.customer == existing
    assert order.email == "Mary.Major@Example.com"
    assert (order.raw_status, order.status) == ("on-hold", OrderStatus.ON_HOLD)
    assert order.shipping_address["country"] == "France"
    assert Customer.objects.count() == 1
    assert not CustomerIdentity.objects.exists()  # customer_id 0 is no identity


def test_shipment_tracking_meta_fills_tracking_number_carrier_and_link(shop, post):
    deliver(post, shop, fixture_bytes("woocommerce", "order.updated.shipment_tracking.json"), "order.updated")
    run_pending()

    order = Order.objects.get()
    assert order.tracking_number == "9400111899223197428490"
    assert order.carrier == "USPS"
    assert order.tracking_url == (
        "https://tools.usps.com/go/TrackConfirmAction_input?qtc_tLabels1=9400111899223197428490"
    )


def test_custom_tracking_provider_keeps_its_own_name_and_link(shop, post):
    payload = load_fixture("woocommerce", "order.updated.shipment_tracking.json")
    tracking = next(m for m in payload["meta_data"] if m["key"] == "_wc_shipment_tracking_items")
    tracking["value"] = tracking["value"][:1]
    deliver(post, shop, as_body(payload), "order.updated")
    run_pending()

    order = Order.objects.get()
    assert (order.tracking_number, order.carrier, order.tracking_url) == (
        "CC-55120",
        "Capital Courier",
        "https://track.capitalcourier.example/parcel/CC-55120",
    )


def test_customer_created_makes_a_registered_customer_with_a_shop_identity(shop, post):
    deliver(post, shop, fixture_bytes("woocommerce", "customer.created.json"), "customer.created")
    run_pending()

    customer = Customer.objects.get()
    assert (customer.email, customer.first_name, customer.last_name) == ("john.doe@example.com", "John", "Doe")
    assert customer.registered_at == datetime(2026, 11, 20, 21, 10, 2, tzinfo=UTC)
    assert list(customer.identities.values_list("shop__slug", "external_id")) == [("corner", "26")]

    deliver(post, shop, fixture_bytes("woocommerce", "order.created.json"), "order.created")
    run_pending()
    assert Order.objects.get().customer == customer
    assert Customer.objects.count() == 1


def test_order_deleted_marks_the_order_deleted(shop, post):
    deliver(post, shop, fixture_bytes("woocommerce", "order.created.json"), "order.created")
    deliver(post, shop, b'{"id":727}', "order.deleted")
    run_pending()

    assert WebhookDelivery.objects.get(topic="order.deleted").dedupe_key == "order.deleted:727:345"
    assert Order.objects.get().deleted_at is not None


def test_legacy_api_payload_fails_with_a_reason_the_owner_can_act_on(shop, post):
    body = as_body({"order": {"id": 727, "status": "processing", "created_at": "2026-11-20T21:15:47Z"}})
    assert deliver(post, shop, body, "order.created").status_code == 200
    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "WP REST API Integration v3" in delivery.error
    assert not Order.objects.exists()


def test_secret_copied_from_the_rest_api_with_html_entities_still_verifies(shop, post):
    # WooCommerce signs with wp_specialchars_decode(secret); its REST API shows the secret as stored.
    shop.webhook_secret = "s3cr&amp;t&lt;42"
    shop.save()
    body = fixture_bytes("woocommerce", "order.created.json")
    headers = woocommerce_headers(shop, body, "order.created")
    headers["HTTP_X_WC_WEBHOOK_SIGNATURE"] = base64.b64encode(
        hmac.new(b"s3cr&t<42", body, hashlib.sha256).digest()
    ).decode()
    assert post(URL, body, **headers).status_code == 200
    assert WebhookDelivery.objects.count() == 1
