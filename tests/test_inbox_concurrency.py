"""The same event three times at once, and two deliveries about one order at once, on
real PostgreSQL with real commits (transactional tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from orders.actions import process_delivery
from orders.models import Customer, Order, OrderStatusChange, WebhookDelivery
from orders.statuses import OrderStatus
from tests.conftest import fixture_bytes, load_fixture, shopify_headers
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db(transaction=True)


def together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work`` in ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


def test_same_event_posted_three_times_at_once_is_stored_once_and_applied_once(broker_down):
    shop = ShopFactory(slug="acme", platform="shopify", webhook_secret="s3cret")
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers(shop, body, "orders/create", "evt-42")

    answers = together(
        3, lambda _: Client().generic("POST", "/webhooks/shopify/acme/", body, content_type="application/json", **headers)
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    delivery = WebhookDelivery.objects.get()

    together(3, lambda _: process_delivery(delivery_id=delivery.pk))
    delivery.refresh_from_db()
    assert delivery.status == "processed"
    assert delivery.attempts == 1
    assert Order.objects.count() == 1
    assert OrderStatusChange.objects.count() == 1
    assert Customer.objects.count() == 1


def test_two_topics_about_one_new_order_processed_at_once_make_one_order(broker_down):
    shop = ShopFactory(slug="acme", platform="shopify", webhook_secret="s3cret")
    data = load_fixture("shopify", "orders_create.json")
    created = dict(data, financial_status="pending")
    paid = dict(data, financial_status="paid", updated_at="2026-11-20T16:20:00-05:00")
    ids = []
    for topic, payload, event in (("orders/create", created, "e1"), ("orders/paid", paid, "e2")):
        body = json.dumps(payload).encode()
        response = Client().generic(
            "POST", "/webhooks/shopify/acme/", body, content_type="application/json", **shopify_headers(shop, body, topic, event)
        )
        ids.append(response.json()["delivery"])

    together(2, lambda i: process_delivery(delivery_id=ids[i]))
    assert Order.objects.count() == 1
    assert Customer.objects.count() == 1
    order = Order.objects.get()
    # Whichever ran first, the newer state wins.
    assert order.status == OrderStatus.PAID
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"processed"}


def test_same_woocommerce_and_generic_events_three_times_at_once_apply_once(broker_down):
    from tests.conftest import herald_signature, woocommerce_headers

    woo = ShopFactory(slug="bolt", platform="woocommerce", webhook_secret="w-secret")
    custom = ShopFactory(slug="garnet", platform="custom", webhook_secret="g-secret")
    woo_body = fixture_bytes("woocommerce", "order.created.json")
    generic_body = fixture_bytes("generic", "order_created.json")
    requests_to_make = [
        ("/webhooks/woocommerce/bolt/", woo_body, woocommerce_headers(woo, woo_body, "order.created")),
        (
            "/webhooks/generic/garnet/",
            generic_body,
            {"HTTP_HERALD_SIGNATURE": herald_signature("g-secret", generic_body)},
        ),
    ]
    for path, body, headers in requests_to_make:
        answers = together(
            3, lambda _: Client().generic("POST", path, body, content_type="application/json", **headers)
        )
        assert [a.status_code for a in answers] == [200, 200, 200], [a.content for a in answers]
        assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    deliveries = list(WebhookDelivery.objects.values_list("pk", flat=True))
    assert len(deliveries) == 2
    for delivery_id in deliveries:
        together(3, lambda _: process_delivery(delivery_id=delivery_id))
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"processed"}
    assert Order.objects.filter(shop=woo).count() == 1
    assert Order.objects.filter(shop=custom).count() == 1
    assert OrderStatusChange.objects.count() == 2
