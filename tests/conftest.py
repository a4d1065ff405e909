"""Shared fixtures. Tests run against real PostgreSQL and Redis: a missing server is an
error, never a skip."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client

from orders.actions import process_delivery
from orders.models import Shop, WebhookDelivery
from tests.factories import ShopFactory

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(platform: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / platform / name).read_text())


def fixture_bytes(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / name).read_bytes()


@pytest.fixture(scope="session", autouse=True)
def redis_is_real() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3)
    client.ping()  # fails the run, never skips, when Redis is missing


@pytest.fixture(autouse=True)
def clean_redis_keys() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("herald:*"))
    if keys:
        client.delete(*keys)


def shopify_headers(shop: Shop, body: bytes, topic: str, event_id: str) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(shop.webhook_secret.encode(), body, hashlib.sha256).digest()).decode()
    return {
        "HTTP_X_SHOPIFY_HMAC_SHA256": digest,
        "HTTP_X_SHOPIFY_TOPIC": topic,
        "HTTP_X_SHOPIFY_EVENT_ID": event_id,
        "HTTP_X_SHOPIFY_SHOP_DOMAIN": f"{shop.slug}.myshopify.com",
        "HTTP_X_SHOPIFY_API_VERSION": "2025-10",
    }


def woocommerce_headers(shop: Shop, body: bytes, topic: str) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(shop.webhook_secret.encode(), body, hashlib.sha256).digest()).decode()
    resource, _, event = topic.partition(".")
    return {
        "HTTP_X_WC_WEBHOOK_SIGNATURE": digest,
        "HTTP_X_WC_WEBHOOK_TOPIC": topic,
        "HTTP_X_WC_WEBHOOK_RESOURCE": resource,
        "HTTP_X_WC_WEBHOOK_EVENT": event,
        "HTTP_X_WC_WEBHOOK_SOURCE": "https://shop.example.com/",
        "HTTP_X_WC_WEBHOOK_ID": "12",
        "HTTP_X_WC_WEBHOOK_DELIVERY_ID": "345",
    }


def herald_signature(secret: str, body: bytes, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


@pytest.fixture
def shopify_shop(db: None) -> Shop:
    return ShopFactory(slug="acme", platform="shopify", webhook_secret="shpss_test_secret")


@pytest.fixture
def post(client: Client) -> Callable[..., Any]:
    def _post(path: str, body: bytes, content_type: str = "application/json", **headers: str) -> Any:
        return client.generic("POST", path, body, content_type=content_type, **headers)

    return _post


def run_pending() -> list[str]:
    """Process pending deliveries in arrival order, as a worker would."""
    ids = WebhookDelivery.objects.filter(status="pending").order_by("id").values_list("id", flat=True)
    return [process_delivery(delivery_id=i) for i in list(ids)]


def _point_broker_at(url: str) -> None:
    from marketing.celery import app

    app.conf.broker_url = url
    # Publishing goes through cached connection and producer pools built from the old URL.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_down() -> Any:
    """The Celery broker is unreachable (a closed port) until the fixture ends."""
    from marketing.celery import app

    good = app.conf.broker_url
    _point_broker_at("redis://127.0.0.1:1/0")
    try:
        yield
    finally:
        _point_broker_at(good)


@pytest.fixture(autouse=True)
def channel_backends(settings: Any) -> Any:
    """Every kind goes to the in-memory outbox unless a test configures otherwise."""
    from channels.backends import locmem
    from channels.kinds import ChannelKind

    settings.CHANNEL_BACKENDS = {kind: {"BACKEND": "channels.backends.locmem.LocmemBackend"} for kind in ChannelKind.values}
    locmem.outbox.clear()
    yield locmem.outbox
    locmem.outbox.clear()


@pytest.fixture
def dead_addresses() -> Any:
    """(kind, address, reason) of every address_dead signal sent during the test."""
    from channels import signals

    seen: list[tuple[str, str, str]] = []

    def handler(sender: Any, **kw: Any) -> None:
        seen.append((kw["kind"], kw["address"], kw["reason"]))

    signals.address_dead.connect(handler)
    yield seen
    signals.address_dead.disconnect(handler)
