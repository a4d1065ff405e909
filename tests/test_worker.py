"""A real Celery worker on the real Redis broker: deliveries posted while no worker runs
(or while the broker is down) are processed once one does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.test import Client
from django.utils import timezone

from marketing.celery import app
from orders.actions import tick
from orders.models import Order, WebhookDelivery
from tests.conftest import _point_broker_at, fixture_bytes, shopify_headers
from tests.factories import ShopFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def purged_queues() -> None:
    with app.connection_for_write() as conn:
        for queue in ("default", "webhooks", "sends", "flows"):
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def worker(purged_queues: None) -> Iterator[Any]:
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20) as w:
        yield w
    connection.close()


@contextlib.contextmanager
def broker_down_for(celery_app: Any) -> Iterator[None]:
    good = celery_app.conf.broker_url
    _point_broker_at("redis://127.0.0.1:1/0")
    try:
        yield
    finally:
        _point_broker_at(good)


def wait_until(predicate: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def post_order(shop: Any, event_id: str) -> int:
    body = fixture_bytes("shopify", "orders_create.json")
    response = Client().generic(
        "POST",
        f"/webhooks/shopify/{shop.slug}/",
        body,
        content_type="application/json",
        **shopify_headers(shop, body, "orders/create", event_id),
    )
    assert response.status_code == 200
    return int(response.json()["delivery"])


def test_delivery_posted_while_no_worker_runs_is_processed_when_one_starts(purged_queues):
    shop = ShopFactory(slug="acme", platform="shopify")
    delivery_id = post_order(shop, "evt-1")
    time.sleep(0.5)
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "pending"

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20):
        assert wait_until(lambda: WebhookDelivery.objects.get(pk=delivery_id).status == "processed")
    assert Order.objects.count() == 1


def test_broker_outage_never_fails_a_webhook_and_the_tick_re_enqueues(purged_queues, worker):
    shop = ShopFactory(slug="acme", platform="shopify")
    with broker_down_for(app):
        delivery_id = post_order(shop, "evt-2")
    time.sleep(1)
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "pending"

    later = timezone.now() + timedelta(minutes=5)
    assert "re-enqueued 1" in tick(now=later)
    assert wait_until(lambda: WebhookDelivery.objects.get(pk=delivery_id).status == "processed")
    assert Order.objects.count() == 1
