from __future__ import annotations

import json
from decimal import Decimal

import pytest

from orders.models import Customer, Order, OrderStatusChange, PrivacyRequest, RejectedRequest, WebhookDelivery
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


def _post(post, shop, name: str, topic: str, event_id: str, data: dict | None = None):
    body = json.dumps(data).encode() if data is not None else fixture_bytes("shopify", name)
    response = post("/webhooks/shopify/acme/", body, **shopify_headers(shop, body, topic, event_id))
    assert response.status_code == 200
    run_pending()
    return WebhookDelivery.objects.get(dedupe_key=f"{topic}:{event_id}")


def test_fulfillment_update_moves_the_order_out_for_delivery_with_tracking(shopify_shop, post):
    _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
    delivery = _post(post, shopify_shop, "fulfillments_update.json", "fulfillments/update", "e2")
    assert delivery.status == "processed", delivery.error
    order = Order.objects.get()
    assert order.status == OrderStatus.OUT_FOR_DELIVERY
    assert order.raw_status == "paid/fulfilled/out_for_delivery"
    assert (order.tracking_number, order.carrier) == ("1Z2345", "UPS")
    assert order.tracking_url.startswith("https://www.ups.com/")


def test_fulfillment_for_an_order_not_yet_known_waits_and_retries(shopify_shop, post):
    delivery = _post(post, shopify_shop, "fulfillments_update.json", "fulfillments/update", "e2")
    assert delivery.status == "pending"
    assert "is not known yet" in delivery.error
    _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
    run_pending()  # the orders tick re-enqueues it a minute later
    delivery.refresh_from_db()
    assert delivery.status == "processed"
    assert Order.objects.get().status == OrderStatus.OUT_FOR_DELIVERY


def test_full_refund_marks_the_order_refunded(shopify_shop, post):
    _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
    _post(post, shopify_shop, "refunds_create.json", "refunds/create", "e2")
    order = Order.objects.get()
    assert (order.status, order.raw_status) == (OrderStatus.REFUNDED, "refunded/unfulfilled")


def test_partial_refund_marks_the_order_partially_refunded(shopify_shop, post):
    _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
    refund = load_fixture("shopify", "refunds_create.json")
    refund["transactions"][0]["amount"] = "50.00"
    _post(post, shopify_shop, "", "refunds/create", "e2", data=refund)
    assert Order.objects.get().status == OrderStatus.PARTIALLY_REFUNDED


def test_cancelled_order_is_cancelled(shopify_shop, post):
    data = load_fixture("shopify", "orders_create.json")
    data.update(cancelled_at="2026-11-21T08:00:00-05:00", updated_at="2026-11-21T08:00:00-05:00", financial_status="voided")
    _post(post, shopify_shop, "", "orders/cancelled", "e1", data=data)
    order = Order.objects.get()
    assert (order.status, order.raw_status) == (OrderStatus.CANCELLED, "cancelled:voided/unfulfilled")


def test_customer_create_records_account_consent_and_identity(shopify_shop, post):
    _post(post, shopify_shop, "customers_create.json", "customers/create", "e1")
    customer = Customer.objects.get()
    assert customer.email == "bob@biller.com"
    assert customer.phone == "+16135551212"
    assert customer.accepts_email_marketing is True
    assert customer.accepts_sms_marketing is False
    assert customer.registered_at.isoformat() == "2026-11-19T16:20:00+00:00"
    assert customer.identities.get().external_id == "706405506930370084"


@pytest.mark.parametrize(
    "name, topic", [("customers_redact.json", "customers/redact"), ("customers_data_request.json", "customers/data_request")]
)
def test_privacy_requests_are_stored_as_open_requests_for_staff(shopify_shop, post, name, topic):
    _post(post, shopify_shop, "customers_create.json", "customers/create", "e1")
    _post(post, shopify_shop, name, topic, "e2")
    request = PrivacyRequest.objects.get()
    assert request.kind == topic
    assert request.is_open
    assert request.customer == Customer.objects.get()
    assert request.order_ids == ["299938", "280263", "220458"]


def test_shop_redact_is_stored_as_an_open_request(shopify_shop, post):
    _post(post, shopify_shop, "shop_redact.json", "shop/redact", "e1")
    assert PrivacyRequest.objects.get().kind == "shop/redact"


def test_order_delete_marks_the_order_deleted_and_keeps_it(shopify_shop, post):
    _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
    _post(post, shopify_shop, "orders_delete.json", "orders/delete", "e2")
    assert Order.objects.get().deleted_at is not None


def test_signals_tell_the_rooms_above_once_with_old_none_on_creation(shopify_shop, post):
    from orders import signals

    seen: list[tuple[str, object]] = []

    def on_status(sender, order, old, new, event_id, occurred_at, **kw):
        seen.append(("status", (old, new, event_id.startswith("status-change:"))))

    def on_created(sender, order, event_id, occurred_at, **kw):
        seen.append(("created", order.number))

    def on_customer(sender, customer, shop, event_id, occurred_at, **kw):
        seen.append(("customer", customer.email))

    signals.order_status_changed.connect(on_status, weak=False)
    signals.order_created.connect(on_created, weak=False)
    signals.customer_created.connect(on_customer, weak=False)
    try:
        _post(post, shopify_shop, "orders_create.json", "orders/create", "e1")
        _post(post, shopify_shop, "orders_create.json", "orders/paid", "e2")  # same state: nothing new
        _post(post, shopify_shop, "fulfillments_update.json", "fulfillments/update", "e3")
    finally:
        signals.order_status_changed.disconnect(on_status)
        signals.order_created.disconnect(on_created)
        signals.customer_created.disconnect(on_customer)
    assert seen == [
        ("customer", "john@example.com"),
        ("created", "#9999"),
        ("status", (None, "paid", True)),
        ("status", ("paid", "out_for_delivery", True)),
    ]
