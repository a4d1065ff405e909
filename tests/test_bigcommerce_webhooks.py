from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from orders.actions import process_delivery
from orders.models import Customer, Order, OrderStatusChange, RejectedRequest, Shop, WebhookDelivery
from orders.platforms.base import body_digest
from orders.statuses import OrderStatus
from tests.conftest import fixture_bytes, load_fixture, run_pending
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db

API = "https://api.bigcommerce.com/stores/abc123"
TOKEN = "bc-access-token-0123456789"
SECRET = "bc-shared-secret"
PATH = "/webhooks/bigcommerce/bc-store/"
ORDER_URL = f"{API}/v2/orders/250"
PRODUCTS_URL = f"{API}/v2/orders/250/products?limit=250&page=1"
SHIPMENTS_URL = f"{API}/v2/orders/250/shipments?limit=250&page=1"


@pytest.fixture
def shop(db: None) -> Shop:
    return ShopFactory(slug="bc-store", platform="bigcommerce", webhook_secret=SECRET, api_url=API, api_key=TOKEN)


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    # Nothing registered answers ConnectionError, and every registered answer must be used.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def signed(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_X_HERALD_WEBHOOK_SECRET": secret}


def serve_order(api: responses.RequestsMock, order: dict[str, Any], *, shipments: list[Any] | None = None) -> None:
    api.get(ORDER_URL, json=order)
    api.get(PRODUCTS_URL, json=load_fixture("bigcommerce", "api_v2_order_products.json"))
    if shipments:
        api.get(SHIPMENTS_URL, json=shipments)
    else:
        api.get(SHIPMENTS_URL, status=204)  # v2 answers an empty list with No Content


def assert_requested(api: responses.RequestsMock, urls: list[str]) -> None:
    assert [call.request.url for call in api.calls] == urls
    for call in api.calls:
        assert call.request.headers["X-Auth-Token"] == TOKEN
        assert call.request.headers["Accept"] == "application/json"


def post_order_created(post: Any) -> Any:
    return post(PATH, fixture_bytes("bigcommerce", "store_order_created.json"), **signed())


def test_signed_order_is_stored_then_fetched_into_an_order_with_lines_customer_and_status(shop, post, api):
    response = post_order_created(post)
    assert response.status_code == 200, response.content
    assert len(api.calls) == 0  # admission never calls BigCommerce
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.topic) == ("pending", "store/order/created")
    assert delivery.dedupe_key == "store/order/created:a93ac75aee7c695b92b975dbc2d83b54cb40bbe4:1795209352"

    serve_order(api, load_fixture("bigcommerce", "api_v2_order.json"))
    process_delivery(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == "processed", delivery.error
    assert_requested(api, [ORDER_URL, PRODUCTS_URL, SHIPMENTS_URL])
    order = Order.objects.get(shop=shop, external_id="250")
    assert (order.number, order.raw_status, order.status) == ("250", "Awaiting Fulfillment", OrderStatus.PAID)
    assert (order.subtotal, order.shipping_total) == (Decimal("199.00"), Decimal("10.00"))
    assert order.tax_total == Decimal("16.42")
    assert (order.discount_total, order.total, order.currency) == (Decimal("5.00"), Decimal("220.42"), "USD")
    assert order.placed_at.isoformat() == "2026-11-20T21:15:47+00:00"
    assert order.source_updated_at.isoformat() == "2026-11-20T21:15:52+00:00"
    assert [(line.sku, line.name, line.quantity, line.price, line.total) for line in order.lines.all()] == [
        ("OTL", "Orbit Terrarium - Large", Decimal("1.000"), Decimal("109.00"), Decimal("109.00")),
        ("SM13", "Smith Journal 13", Decimal("2.000"), Decimal("45.00"), Decimal("90.00")),
    ]
    assert (order.tracking_number, order.carrier, order.tracking_url) == ("", "", "")
    customer = Customer.objects.get()
    assert order.customer == customer
    assert (customer.email, customer.phone, customer.first_name) == ("jane.doe@example.com", "+15122014455", "Jane")
    assert customer.identities.get().external_id == "32"
    assert customer.accepts_email_marketing is None  # an order says nothing about the newsletter
    change = OrderStatusChange.objects.get()
    assert (change.old_status, change.new_status, change.applied) == ("", "paid", True)


def test_status_update_refetches_the_order_and_records_the_change_with_tracking(shop, post, api):
    post_order_created(post)
    serve_order(api, load_fixture("bigcommerce", "api_v2_order.json"))
    run_pending()
    api.reset()

    body = fixture_bytes("bigcommerce", "store_order_statusUpdated.json")
    assert post(PATH, body, **signed()).status_code == 200
    shipped = dict(
        load_fixture("bigcommerce", "api_v2_order.json"),
        status_id=2,
        status="Shipped",
        custom_status="Shipped",
        items_shipped=3,
        date_shipped="Sun, 22 Nov 2026 14:02:33 +0000",
        date_modified="Sun, 22 Nov 2026 14:02:40 +0000",
    )
    serve_order(api, shipped, shipments=load_fixture("bigcommerce", "api_v2_order_shipments.json"))
    run_pending()

    assert_requested(api, [ORDER_URL, PRODUCTS_URL, SHIPMENTS_URL])
    delivery = WebhookDelivery.objects.get(topic="store/order/statusUpdated")
    assert delivery.status == "processed", delivery.error
    order = Order.objects.get()
    assert (order.status, order.raw_status) == (OrderStatus.SHIPPED, "Shipped")
    assert (order.tracking_number, order.carrier) == ("1Z999AA10123456784", "UPS")
    assert order.tracking_url == "https://www.ups.com/track?tracknum=1Z999AA10123456784"
    assert order.shipping_address["street_1"] == "1100 Barton Springs Road"
    history = list(OrderStatusChange.objects.values_list("old_status", "new_status", "applied", "changed_at"))
    assert [row[:3] for row in history] == [("", "paid", True), ("paid", "shipped", True)]
    assert history[1][3].isoformat() == "2026-11-22T14:02:40+00:00"


def test_same_hash_posted_twice_is_stored_once(shop, post):
    first = post_order_created(post)
    second = post_order_created(post)
    assert first.json()["delivery"] == second.json()["delivery"]
    assert second.json()["duplicate"] is True
    assert WebhookDelivery.objects.count() == 1


def test_two_updates_of_one_order_share_a_hash_but_are_both_stored(shop, post):
    # BigCommerce's hash covers only {"type": "order", "id": N}: the same for every update.
    body = load_fixture("bigcommerce", "store_order_statusUpdated.json")
    for created_at in (1795209400, 1795209500):
        raw = json.dumps(dict(body, created_at=created_at)).encode()
        assert post(PATH, raw, **signed()).json()["duplicate"] is False
    assert WebhookDelivery.objects.count() == 2


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "Missing the X-Herald-Webhook-Secret header"), (signed("guessed"), "does not match")],
    ids=["missing", "wrong"],
)
def test_missing_or_wrong_secret_is_401_and_kept_in_the_rejected_log(shop, post, headers, reason):
    response = post(PATH, fixture_bytes("bigcommerce", "store_order_created.json"), **headers)
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()
    rejected = RejectedRequest.objects.get()
    assert rejected.shop == shop
    assert reason in rejected.reason
    shop.refresh_from_db()
    assert shop.rejected_count == 1


def test_json_without_a_scope_is_refused_with_400_and_not_stored(shop, post):
    response = post(PATH, json.dumps({"data": {"type": "order", "id": 250}}).encode(), **signed())
    assert response.status_code == 400
    assert "no 'scope'" in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


def test_unreadable_body_with_the_right_secret_is_stored_then_failed_with_its_reason(shop, post, api):
    body = b"scope=store/order/created&id=250"
    assert post(PATH, body, content_type="application/x-www-form-urlencoded", **signed()).status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.topic, delivery.dedupe_key) == ("unknown", body_digest(body))

    run_pending()

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert "not valid JSON" in delivery.error
    assert len(api.calls) == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": 503}, "BigCommerce answered HTTP 503 when fetching order 250."),
        ({"status": 429}, "BigCommerce's rate limit was reached when fetching order 250."),
        ({"body": requests.ConnectionError("connection refused")}, "Could not reach BigCommerce to fetch order 250"),
        ({"body": requests.ReadTimeout("read timed out")}, "did not answer in time when fetching order 250"),
    ],
    ids=["503", "429", "unreachable", "timeout"],
)
def test_bigcommerce_unavailable_leaves_the_delivery_pending_to_retry(shop, post, api, answer, reason):
    post_order_created(post)
    api.get(ORDER_URL, **answer)

    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert delivery.error.startswith("Will retry: ")
    assert reason in delivery.error
    assert delivery.attempts == 1
    assert not Order.objects.exists()


def test_order_gone_at_bigcommerce_fails_the_delivery_with_the_reason(shop, post, api):
    post_order_created(post)
    api.get(ORDER_URL, status=404, json={"status": 404, "message": "The requested resource was not found."})

    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.error == "Order 250 no longer exists at BigCommerce."
    assert not Order.objects.exists()


def test_refused_access_token_fails_the_delivery_with_a_credentials_message(shop, post, api):
    post_order_created(post)
    api.get(ORDER_URL, status=401, json=[{"status": 401, "message": "You are not authorized to access this resource."}])

    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "refused the access token" in delivery.error
    assert "API key is the access token" in delivery.error


def test_shop_without_api_credentials_fails_asking_staff_to_fill_them_in(shop, post, api):
    Shop.objects.filter(pk=shop.pk).update(api_key="")
    post_order_created(post)

    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert "has no BigCommerce API credentials" in delivery.error
    assert "on the shop" in delivery.error
    assert len(api.calls) == 0


def test_customer_created_is_fetched_into_a_customer_with_identity_and_newsletter_consent(shop, post, api):
    body = fixture_bytes("bigcommerce", "store_customer_created.json")
    assert post(PATH, body, **signed()).status_code == 200
    customer_url = f"{API}/v3/customers?id:in=32"
    subscriber_url = f"{API}/v3/customers/subscribers?email=jane.doe%40example.com"
    api.get(customer_url, json=load_fixture("bigcommerce", "api_v3_customers.json"))
    api.get(subscriber_url, json=load_fixture("bigcommerce", "api_v3_subscribers.json"))

    run_pending()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "processed", delivery.error
    assert_requested(api, [customer_url, subscriber_url])
    customer = Customer.objects.get()
    assert (customer.email, customer.phone) == ("jane.doe@example.com", "+15122014455")
    assert (customer.first_name, customer.last_name) == ("Jane", "Doe")
    assert customer.registered_at.isoformat() == "2026-11-02T15:04:11+00:00"
    assert customer.accepts_email_marketing is True
    assert customer.accepts_sms_marketing is None
    identity = customer.identities.get()
    assert (identity.shop, identity.external_id) == (shop, "32")


def test_customer_who_unsubscribed_is_recorded_as_declining_email_marketing(shop, post, api):
    post(PATH, fixture_bytes("bigcommerce", "store_customer_created.json"), **signed())
    subscribers = load_fixture("bigcommerce", "api_v3_subscribers.json")
    subscribers["data"][0]["consents"] = []
    api.get(f"{API}/v3/customers?id:in=32", json=load_fixture("bigcommerce", "api_v3_customers.json"))
    api.get(f"{API}/v3/customers/subscribers?email=jane.doe%40example.com", json=subscribers)

    run_pending()

    assert Customer.objects.get().accepts_email_marketing is False


def test_archived_order_is_marked_deleted_without_calling_bigcommerce(shop, post, api):
    post_order_created(post)
    serve_order(api, load_fixture("bigcommerce", "api_v2_order.json"))
    run_pending()
    api.reset()
    archived = dict(
        load_fixture("bigcommerce", "store_order_created.json"),
        scope="store/order/archived",
        hash="0c2bd6a1f4e7c53d9a8e61f0b2d4c7a9e5f3b1d8",
        created_at=1795363200,
    )

    post(PATH, json.dumps(archived).encode(), **signed())
    run_pending()

    assert len(api.calls) == 0
    assert WebhookDelivery.objects.get(topic="store/order/archived").status == "processed"
    assert Order.objects.get().deleted_at.isoformat() == "2026-11-22T16:00:00+00:00"
