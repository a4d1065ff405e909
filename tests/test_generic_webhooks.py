"""Herald's own signed protocol: the Magento module, 3dcart and Volusion bridges, custom back-ends."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from jsonschema import Draft202012Validator

from orders.actions import replay_deliveries
from orders.models import (
    Customer,
    CustomerIdentity,
    Order,
    OrderStatusChange,
    Product,
    ProductView,
    RejectedRequest,
    Shop,
    StatusMapping,
    WebhookDelivery,
)
from orders.platforms.generic import SCHEMA
from orders.statuses import OrderStatus
from tests.conftest import FIXTURES, herald_signature, load_fixture, run_pending
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "WEBHOOKS.md"


@pytest.fixture(autouse=True)
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def shop(db: None) -> Shop:
    return ShopFactory(slug="corner-store", platform="custom", webhook_secret="hrld_test_secret")


def send(post: Any, shop: Shop, payload: dict[str, Any] | bytes, *, at: int | None = None, path: str = "") -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = herald_signature(shop.webhook_secret, body, at)
    return post(path or shop.webhook_path(), body, HTTP_HERALD_SIGNATURE=signature)


def order_event(name: str = "order_created.json", platform: str = "generic", **order: Any) -> dict[str, Any]:
    """A fixture event with some order fields replaced (None removes one) and an id of its own."""
    event = copy.deepcopy(load_fixture(platform, name))
    for key, value in order.items():
        if value is None:
            event["data"]["order"].pop(key)
        else:
            event["data"]["order"][key] = value
    if order:
        event["id"] += ":" + ",".join(sorted(order))
    return event


def test_signed_order_created_is_stored_then_processed_into_order_lines_and_customer(shop, post):
    event = load_fixture("generic", "order_created.json")
    response = send(post, shop, event)
    assert response.status_code == 200, response.content
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.topic) == ("pending", "order.created")
    assert delivery.dedupe_key == "order.created:evt_2f6c1a9e-order-10452-created"

    run_pending()

    delivery.refresh_from_db()
    assert delivery.status == "processed", delivery.error
    order = Order.objects.get(shop=shop, external_id="ord_10452")
    assert (order.number, order.status, order.raw_status, order.currency) == ("10452", "paid", "paid", "USD")
    assert (order.subtotal, order.shipping_total, order.tax_total, order.discount_total, order.total) == (
        Decimal("54.00"),
        Decimal("5.95"),
        Decimal("4.32"),
        Decimal("5.40"),
        Decimal("58.87"),
    )
    assert order.placed_at == datetime(2026, 11, 20, 21, 15, 47, tzinfo=UTC)
    assert order.source_updated_at == datetime(2026, 11, 20, 21, 15, 49, tzinfo=UTC)
    assert order.shipping_address["city"] == "New York" and "company" not in order.shipping_address
    assert order.problems == []
    assert [(li.sku, li.quantity, li.price, li.total, li.product.external_id) for li in order.lines.all()] == [
        ("DRIP-02-WHT", Decimal("1.000"), Decimal("32.00"), Decimal("32.00"), "prod_dripper_02"),
        ("FILT-100", Decimal("2.000"), Decimal("11.00"), Decimal("22.00"), "prod_filters_100"),
    ]
    customer = Customer.objects.get()
    assert order.customer == customer
    assert (customer.email, customer.phone, customer.first_name, customer.timezone) == (
        "mia.jensen@example.com",
        "+12125550147",
        "Mia",
        "America/New_York",
    )
    assert (customer.accepts_email_marketing, customer.accepts_sms_marketing) == (True, False)
    assert customer.identities.get().external_id == "cus_7781"
    change = OrderStatusChange.objects.get()
    assert (change.old_status, change.new_status, change.new_raw_status, change.applied) == ("", "paid", "paid", True)


def test_status_change_with_a_later_updated_at_moves_the_order_on(shop, post):
    send(post, shop, load_fixture("generic", "order_created.json"))
    send(post, shop, load_fixture("generic", "order_status_changed.json"))
    run_pending()

    order = Order.objects.get()
    assert order.status == OrderStatus.SHIPPED
    assert (order.tracking_number, order.carrier) == ("1Z999AA10123456784", "UPS")
    assert list(OrderStatusChange.objects.values_list("old_status", "new_status", "applied")) == [
        ("", "paid", True),
        ("paid", "shipped", True),
    ]


def test_status_change_older_than_what_we_hold_goes_into_history_only(shop, post):
    send(post, shop, load_fixture("generic", "order_status_changed.json"))
    late = order_event("order_status_changed.json", status="cancelled", updated_at="2026-11-20T18:00:00-05:00")
    send(post, shop, late)
    run_pending()

    order = Order.objects.get()
    assert (order.status, order.raw_status) == ("shipped", "shipped")
    assert list(OrderStatusChange.objects.values_list("new_status", "applied")) == [
        ("shipped", True),
        ("cancelled", False),
    ]


def test_same_event_posted_twice_is_stored_once(shop, post):
    event = load_fixture("generic", "order_created.json")
    first, second = send(post, shop, event), send(post, shop, event)
    assert first.json()["delivery"] == second.json()["delivery"]
    assert second.json()["duplicate"] is True
    assert WebhookDelivery.objects.count() == 1


def test_any_matching_v1_signature_is_accepted_while_a_secret_rotates(shop, post):
    body = json.dumps(load_fixture("generic", "customer_created.json")).encode()
    old = herald_signature("the-old-secret", body)
    new = herald_signature(shop.webhook_secret, body)
    header = f"{old}, {new.split(',')[1]}"
    response = post(shop.webhook_path(), body, HTTP_HERALD_SIGNATURE=header)
    assert response.status_code == 200, response.content
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("make_header", "reason"),
    [
        (lambda body: None, "Missing the Herald-Signature header"),
        (lambda body: herald_signature("not-the-shop-secret", body), "does not match"),
        (lambda body: "sha256=" + "0" * 64, "malformed"),
        (lambda body: herald_signature("hrld_test_secret", body).split(",")[1], "malformed"),
        (lambda body: herald_signature("hrld_test_secret", body, int(NOW.timestamp()) - 301), "301 seconds ago"),
        (lambda body: herald_signature("hrld_test_secret", body, int(NOW.timestamp()) + 301), "in the future"),
    ],
    ids=["missing", "wrong-secret", "malformed", "no-timestamp", "stale", "future"],
)
def test_unauthenticated_request_is_401_and_kept_in_the_rejected_log(shop, post, make_header, reason):
    body = json.dumps(load_fixture("generic", "order_created.json")).encode()
    header = make_header(body)
    response = post(shop.webhook_path(), body, **({"HTTP_HERALD_SIGNATURE": header} if header else {}))
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert not WebhookDelivery.objects.exists()
    rejected = RejectedRequest.objects.get()
    assert (rejected.shop, rejected.status_code) == (shop, 401)
    assert reason in rejected.reason


def test_signature_exactly_at_the_tolerance_is_accepted(shop, post):
    response = send(post, shop, load_fixture("generic", "order_created.json"), at=int(NOW.timestamp()) - 300)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("body", "topic", "reason"),
    [
        (b"order=10452&status=paid", "unknown", "The body is not valid JSON"),
        (b"\xff\xfe{\x00\"id\x00\"", "unknown", "The body is not UTF-8 text (byte 0 is invalid)"),
        (b'{"type": "order.created", "data": {}}', "order.created", "the event has no 'id'"),
    ],
    ids=["not-json", "not-utf8", "no-id"],
)
def test_signed_but_unreadable_body_is_stored_then_failed_with_its_reason_and_replayable(shop, post, body, topic, reason):
    response = send(post, shop, body)
    assert response.status_code == 200, response.content
    delivery = WebhookDelivery.objects.get()
    assert delivery.topic == topic
    assert delivery.dedupe_key.startswith("sha256:")
    assert delivery.body_bytes == body

    run_pending()

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert reason in delivery.error
    assert replay_deliveries(delivery_ids=[delivery.pk]) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"total": "abc"}, "data.order.total is 'abc', which is not an amount"),
        ({"id": None}, "data.order.id is missing."),
        ({"currency": 978}, "data.order.currency should be a string, not a number."),
        (
            {"lines": [{"name": "Filters", "quantity": "two", "price": "11.00"}]},
            "data.order.lines[0].quantity is 'two', which is not a quantity",
        ),
        ({"placed_at": "20/11/2026 16:15"}, "data.order.placed_at is '20/11/2026 16:15', which is not a date and time"),
        ({"placed_at": "2026-02-30T10:00:00Z"}, "'data.order.placed_at' is not a real date and time"),
    ],
    ids=["total-not-an-amount", "no-order-id", "currency-a-number", "quantity-in-words", "date-format", "no-such-day"],
)
def test_event_off_the_schema_is_failed_with_a_reason_naming_the_field(shop, post, changes, reason):
    send(post, shop, order_event(**changes))
    run_pending()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert reason in delivery.error
    assert not Order.objects.exists()


def test_unknown_event_type_is_failed_naming_the_types_we_accept(shop, post):
    event = dict(load_fixture("generic", "order_created.json"), type="order.deleted")
    send(post, shop, event)
    run_pending()
    delivery = WebhookDelivery.objects.get()
    assert delivery.topic == "order.deleted"
    assert "type is 'order.deleted'; expected one of: order.created, order.updated" in delivery.error


def test_raw_status_missing_from_the_map_becomes_unknown_with_a_mapping_row_for_staff(shop, post):
    send(post, shop, order_event(status="awaiting_courier"))
    run_pending()
    order = Order.objects.get()
    assert (order.status, order.raw_status) == (OrderStatus.UNKNOWN, "awaiting_courier")
    mapping = StatusMapping.objects.get(platform="custom", raw_status="awaiting_courier")
    assert mapping.status == OrderStatus.UNKNOWN
    assert mapping.first_seen_at == NOW


def test_timestamp_without_a_zone_is_read_in_the_shops_time_zone(shop, post):
    send(post, shop, order_event(placed_at="2026-11-20T16:15:47", updated_at="2026-11-20 16:15:49"))
    run_pending()
    order = Order.objects.get()
    # The shop is in America/New_York: 16:15 there is 21:15 UTC in November.
    assert order.placed_at == datetime(2026, 11, 20, 21, 15, 47, tzinfo=UTC)
    assert order.source_updated_at == datetime(2026, 11, 20, 21, 15, 49, tzinfo=UTC)
    assert any("data.order.placed_at" in p and "America/New_York" in p for p in order.problems)


def test_unknown_currency_is_kept_and_noted_on_the_order(shop, post):
    send(post, shop, order_event(currency="xyz"))
    run_pending()
    order = Order.objects.get()
    assert (order.currency, order.total) == ("XYZ", Decimal("58.87"))
    assert order.problems == ["Unknown currency 'XYZ'; amounts kept as sent."]


def test_placed_at_in_the_future_is_clamped_to_when_it_arrived_and_noted(shop, post):
    future = (NOW + timedelta(days=2)).isoformat()
    send(post, shop, order_event(placed_at=future))
    run_pending()
    order = Order.objects.get()
    assert order.placed_at == NOW
    assert any("is in the future" in p for p in order.problems)


def test_unreadable_email_and_phone_are_kept_raw_and_marked_invalid(shop, post):
    event = order_event(email="mia at example dot com")
    event["data"]["order"]["customer"].update(email="mia at example dot com", phone="call after 6pm")
    send(post, shop, event)
    run_pending()
    customer = Customer.objects.get()
    assert (customer.email, customer.email_raw, customer.email_valid) == ("", "mia at example dot com", False)
    assert (customer.phone, customer.phone_raw, customer.phone_valid) == ("", "call after 6pm", False)
    assert Order.objects.get().customer == customer


def test_order_before_its_customer_creates_them_and_customer_created_joins_through_the_identity(shop, post):
    event = order_event(email="guest-checkout@example.com")
    event["data"]["order"]["customer"] = {"id": "cus_7790", "email": "guest-checkout@example.com"}
    send(post, shop, event)
    run_pending()
    send(post, shop, load_fixture("generic", "customer_created.json"))
    run_pending()

    customer = Customer.objects.get()
    assert Order.objects.get().customer == customer
    assert CustomerIdentity.objects.get().external_id == "cus_7790"
    # The newer customer record wins: the address the order carried is replaced.
    assert (customer.email, customer.first_name, customer.phone) == ("noah.berg@example.com", "Noah", "+16465550199")
    assert customer.timezone == "America/Chicago"
    assert customer.registered_at is None


def test_customer_registered_marks_the_customer_registered_even_without_registered_at(shop, post):
    registered = load_fixture("generic", "customer_registered.json")
    del registered["data"]["customer"]["registered_at"]
    send(post, shop, load_fixture("generic", "customer_created.json"))
    send(post, shop, registered)
    run_pending()
    customer = Customer.objects.get()
    assert customer.registered_at == datetime(2026, 11, 19, 13, 20, 40, tzinfo=UTC)
    assert customer.accepts_email_marketing is True


def test_product_viewed_records_the_product_and_the_view(shop, post):
    send(post, shop, load_fixture("generic", "product_viewed.json"))
    run_pending()
    product = Product.objects.get(shop=shop, external_id="prod_kettle_gn")
    assert (product.sku, product.name, product.price) == ("KETTLE-GN-1L", "Gooseneck kettle, 1 l", Decimal("69.00"))
    view = ProductView.objects.get()
    assert view.product == product
    assert view.customer.email == "mia.jensen@example.com"
    assert view.viewed_at == datetime(2026, 11, 22, 17, 41, 7, tzinfo=UTC)


def test_magento_shop_maps_processing_to_paid_and_complete_to_shipped(post):
    magento = ShopFactory(slug="luma", platform="magento", webhook_secret="mage_secret", currency="EUR")
    assert magento.webhook_path() == "/webhooks/magento/luma/"
    send(post, magento, load_fixture("magento", "order_created.json"))
    run_pending()
    order = Order.objects.get(shop=magento, external_id="42")
    assert (order.status, order.raw_status, order.number, order.total) == (
        "paid",
        "processing",
        "000000042",
        Decimal("105.91"),
    )

    send(post, magento, load_fixture("magento", "order_status_changed.json"))
    run_pending()
    order.refresh_from_db()
    assert (order.status, order.raw_status, order.carrier) == ("shipped", "complete", "dhl")
    assert list(order.status_changes.values_list("new_status", "new_raw_status")) == [
        ("paid", "processing"),
        ("shipped", "complete"),
    ]


def test_magento_registration_arrives_through_the_magento_url(post):
    magento = ShopFactory(slug="luma", platform="magento", webhook_secret="mage_secret")
    send(post, magento, load_fixture("magento", "customer_registered.json"))
    run_pending()
    customer = Customer.objects.get()
    assert customer.registered_at == datetime(2026, 11, 21, 13, 7, 1, tzinfo=UTC)
    assert CustomerIdentity.objects.get(shop=magento).external_id == "18"


@pytest.mark.parametrize(
    ("platform", "fixture", "raw", "status"),
    [
        ("threedcart", "threedcart_order_updated.json", "Shipped", OrderStatus.SHIPPED),
        ("volusion", "volusion_order_created.json", "Backordered", OrderStatus.BACKORDERED),
    ],
)
def test_bridged_shop_status_is_read_through_its_platforms_map(post, platform, fixture, raw, status):
    bridged = ShopFactory(slug=f"{platform}-shop", platform=platform, webhook_secret="bridge_secret")
    assert bridged.webhook_path() == f"/webhooks/generic/{platform}-shop/"
    send(post, bridged, load_fixture("generic", fixture))
    run_pending()
    order = Order.objects.get(shop=bridged)
    assert (order.raw_status, order.status) == (raw, status)


def test_body_over_the_size_limit_is_413_and_not_stored(shop, post, settings):
    settings.HERALD_WEBHOOK_MAX_BYTES = 1024
    event = order_event(lines=[{"name": "x" * 500, "quantity": 1, "price": "1.00"}] * 3)
    response = send(post, shop, event)
    assert response.status_code == 413
    assert not WebhookDelivery.objects.exists()


def test_shop_posting_to_the_other_protocols_url_is_404(post):
    magento = ShopFactory(slug="luma", platform="magento", webhook_secret="mage_secret")
    response = send(post, magento, load_fixture("magento", "order_created.json"), path="/webhooks/generic/luma/")
    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


# --- the schema and the guide cannot drift -----------------------------------------------

VALIDATOR = Draft202012Validator(SCHEMA)
FIXTURE_FILES = sorted((FIXTURES / "generic").glob("*.json")) + sorted((FIXTURES / "magento").glob("*.json"))


def guide_examples() -> list[str]:
    return re.findall(r"^```json\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_schema_is_valid_json_schema_2020_12():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_follows_the_schema(path):
    errors = [e.message for e in VALIDATOR.iter_errors(json.loads(path.read_text()))]
    assert errors == []


def test_every_json_example_in_the_guide_follows_the_schema_and_every_type_has_one():
    examples = [json.loads(block) for block in guide_examples()]
    for example in examples:
        assert [e.message for e in VALIDATOR.iter_errors(example)] == [], example["id"]
    assert {e["type"] for e in examples} == set(SCHEMA["properties"]["type"]["enum"])


def test_worked_signature_example_in_the_guide_is_right():
    guide = GUIDE.read_text(encoding="utf-8")
    secret = re.search(r'^secret = "([^"]+)"$', guide, flags=re.M).group(1)
    body = re.search(r"^body = '([^']+)'$", guide, flags=re.M).group(1).encode()
    at = int(re.search(r"^t = (\d+)$", guide, flags=re.M).group(1))
    header = re.search(r"^Herald-Signature: (t=\d+,v1=[0-9a-f]{64})$", guide, flags=re.M).group(1)
    assert header == herald_signature(secret, body, at)
    assert [] == [e.message for e in VALIDATOR.iter_errors(json.loads(body))]
