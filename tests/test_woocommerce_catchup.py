from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from kombu.exceptions import OperationalError

from orders import catchup, tasks
from orders.catchup import LOCK_KEY, enqueue_due_syncs, sync_woocommerce
from orders.heartbeat import client as redis_client
from orders.models import Order, OrderStatusChange, Platform, Shop, WebhookDelivery
from tests.conftest import fixture_bytes, load_fixture, run_pending, woocommerce_headers
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db

ORDERS_URL = "https://shop.example.com/wp-json/wc/v3/orders"
SYNCED_UNTIL = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 10, 20, tzinfo=ZoneInfo("America/New_York"))  # 15:20 UTC


def woo_shop(**fields: Any) -> Shop:
    defaults: dict[str, Any] = {
        "platform": Platform.WOOCOMMERCE,
        "api_url": "https://shop.example.com/",
        "api_key": "ck_4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
        "api_secret": "cs_0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b",
        "synced_until": SYNCED_UNTIL,
    }
    return ShopFactory(**{**defaults, **fields})


@pytest.fixture
def shop(db: None) -> Shop:
    return woo_shop(slug="corner", webhook_secret="wc-secret-7Hq!x")


@pytest.fixture
def wc_api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def page_of(mock: responses.RequestsMock, orders: list[dict[str, Any]], *, total: int, pages: int) -> None:
    mock.get(ORDERS_URL, json=orders, headers={"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)})


def rest_order(order_id: int, modified: datetime) -> dict[str, Any]:
    """The fixture as the orders endpoint lists it: with ``_links``, which webhooks omit."""
    order = load_fixture("woocommerce", "order.updated.json")
    stamp = modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    order.update(id=order_id, number=str(order_id), date_modified_gmt=stamp)
    order["_links"] = {
        "self": [{"href": f"{ORDERS_URL}/{order_id}"}],
        "collection": [{"href": ORDERS_URL}],
        "customer": [{"href": "https://shop.example.com/wp-json/wc/v3/customers/26"}],
    }
    return order


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def test_catch_up_asks_for_orders_modified_since_the_last_sync_with_basic_auth(shop, wc_api):
    page_of(wc_api, [rest_order(727, SYNCED_UNTIL + timedelta(minutes=3))], total=1, pages=1)

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert result == "corner: 1 orders seen, 1 new"
    (call,) = wc_api.calls
    assert call.request.url.split("?")[0] == ORDERS_URL
    assert query_of(call) == {
        "modified_after": ["2026-11-22T14:55:00"],  # synced_until less the overlap, in UTC
        "dates_are_gmt": ["true"],
        "orderby": ["modified"],
        "order": ["asc"],
        "per_page": ["100"],
        "page": ["1"],
    }
    credentials = f"{shop.api_key}:{shop.api_secret}".encode()
    assert call.request.headers["Authorization"] == "Basic " + base64.b64encode(credentials).decode()
    shop.refresh_from_db()
    assert shop.synced_until == NOW


def test_first_catch_up_reads_the_last_day_in_utc_whatever_the_callers_zone(db, wc_api):
    shop = woo_shop(slug="fresh", synced_until=None)
    page_of(wc_api, [], total=0, pages=0)

    assert sync_woocommerce(shop_id=shop.pk, now=NOW) == "fresh: 0 orders seen, 0 new"

    assert query_of(wc_api.calls[0])["modified_after"] == ["2026-11-21T15:15:00"]
    shop.refresh_from_db()
    assert shop.synced_until == NOW


def test_catch_up_follows_x_wp_total_pages_and_stores_pending_catch_up_deliveries(shop, wc_api):
    orders = [rest_order(1000 + n, SYNCED_UNTIL + timedelta(seconds=n)) for n in range(103)]
    page_of(wc_api, orders[:100], total=103, pages=2)
    page_of(wc_api, orders[100:], total=103, pages=2)

    assert sync_woocommerce(shop_id=shop.pk, now=NOW) == "corner: 103 orders seen, 103 new"

    assert [query_of(call)["page"] for call in wc_api.calls] == [["1"], ["2"]]
    deliveries = WebhookDelivery.objects.filter(shop=shop)
    assert deliveries.count() == 103
    assert set(deliveries.values_list("source", "status", "topic")) == {("catch-up", "pending", "order.updated")}
    last = deliveries.get(dedupe_key="order:1102:2026-11-22T15:01:42Z")
    assert json.loads(last.body_bytes)["id"] == 1102
    shop.refresh_from_db()
    assert shop.synced_until == NOW


def test_order_first_received_by_webhook_is_not_stored_again_by_the_catch_up(shop, wc_api, post):
    body = fixture_bytes("woocommerce", "order.updated.json")
    post("/webhooks/woocommerce/corner/", body, **woocommerce_headers(shop, body, "order.updated"))
    webhook = WebhookDelivery.objects.get()
    same_state = rest_order(727, datetime(2026, 11, 22, 14, 30, 12, tzinfo=UTC))
    guest = load_fixture("woocommerce", "order.created.guest.json")
    page_of(wc_api, [same_state, guest], total=2, pages=1)

    assert sync_woocommerce(shop_id=shop.pk, now=NOW) == "corner: 2 orders seen, 1 new"

    pulled = WebhookDelivery.objects.exclude(pk=webhook.pk).get()
    assert (pulled.source, pulled.dedupe_key) == ("catch-up", "order:731:2026-11-21T15:02:11Z")
    run_pending()
    assert set(Order.objects.values_list("external_id", flat=True)) == {"727", "731"}
    assert OrderStatusChange.objects.filter(order__external_id="727").count() == 1


def test_webhook_arriving_after_the_catch_up_pulled_the_same_state_is_a_duplicate(shop, wc_api, post):
    page_of(wc_api, [rest_order(727, datetime(2026, 11, 22, 14, 30, 12, tzinfo=UTC))], total=1, pages=1)
    sync_woocommerce(shop_id=shop.pk, now=NOW)

    body = fixture_bytes("woocommerce", "order.updated.json")
    response = post("/webhooks/woocommerce/corner/", body, **woocommerce_headers(shop, body, "order.updated"))

    assert response.json()["duplicate"] is True
    assert WebhookDelivery.objects.get().source == "catch-up"


@pytest.mark.parametrize("limit", ["MAX_PAGES", "RUN_BUDGET_SECONDS"])
def test_run_stopped_early_resumes_from_the_newest_change_it_saw(shop, wc_api, monkeypatch, limit):
    monkeypatch.setattr(catchup, limit, 1 if limit == "MAX_PAGES" else -1)
    orders = [rest_order(1000 + n, SYNCED_UNTIL + timedelta(seconds=n)) for n in range(100)]
    page_of(wc_api, orders, total=250, pages=3)

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert result == (
        "corner: 100 orders seen, 100 new; stopped early after page 1, "
        "continues from 2026-11-22T15:01:39+00:00 next run"
    )
    assert len(wc_api.calls) == 1
    shop.refresh_from_db()
    assert shop.synced_until == SYNCED_UNTIL + timedelta(seconds=99)


@pytest.mark.parametrize("failing_page", [1, 2])
def test_server_error_leaves_synced_until_unchanged_and_says_why(shop, wc_api, failing_page):
    error = {"code": "internal_server_error", "message": "There has been a critical error on this website."}
    if failing_page == 2:
        page_of(wc_api, [rest_order(1000 + n, SYNCED_UNTIL) for n in range(100)], total=150, pages=2)
    wc_api.get(ORDERS_URL, status=500, json=error)

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert result == (
        f"corner: WooCommerce at {ORDERS_URL} answered 500 (internal_server_error: There has been a critical "
        "error on this website.). Herald tries again in 15 minutes."
    )
    shop.refresh_from_db()
    assert shop.synced_until == SYNCED_UNTIL


def test_unreachable_shop_leaves_synced_until_unchanged_and_says_why(shop, wc_api):
    wc_api.get(ORDERS_URL, body=requests.ConnectionError("Name or service not known"))

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert result.startswith(f"corner: Could not reach {ORDERS_URL} (ConnectionError: Name or service not known)")
    shop.refresh_from_db()
    assert shop.synced_until == SYNCED_UNTIL


def test_refused_consumer_key_is_reported_in_words_the_owner_can_act_on(shop, wc_api):
    refusal = {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot list resources.",
        "data": {"status": 401},
    }
    wc_api.get(ORDERS_URL, status=401, json=refusal)

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert "WooCommerce refused the consumer key with 401" in result
    assert "Sorry, you cannot list resources." in result
    assert "Read access" in result
    shop.refresh_from_db()
    assert shop.synced_until == SYNCED_UNTIL


def test_plain_http_api_url_is_refused_before_any_credentials_are_sent(db, wc_api):
    shop = woo_shop(slug="plain", api_url="http://shop.example.com")

    result = sync_woocommerce(shop_id=shop.pk, now=NOW)

    assert "must start with https://" in result
    assert len(wc_api.calls) == 0
    shop.refresh_from_db()
    assert shop.synced_until == SYNCED_UNTIL


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(tasks.sync_woocommerce_task, "delay", lambda shop_id: calls.append(shop_id))
    return calls


def test_enqueue_due_syncs_picks_only_due_woocommerce_shops_with_credentials(db, started):
    now = SYNCED_UNTIL
    stale = woo_shop(slug="stale", synced_until=now - timedelta(minutes=16))
    never = woo_shop(slug="never", synced_until=None)
    woo_shop(slug="recent", synced_until=now - timedelta(minutes=5))
    woo_shop(slug="exactly-one-interval", synced_until=now - timedelta(minutes=15))
    woo_shop(slug="no-secret", synced_until=None, api_secret="")
    woo_shop(slug="no-key", synced_until=None, api_key="")
    woo_shop(slug="no-url", synced_until=None, api_url="")
    woo_shop(slug="inactive", synced_until=None, is_active=False)
    woo_shop(slug="shopify", synced_until=None, platform=Platform.SHOPIFY)

    assert enqueue_due_syncs(now=now) == 2
    assert sorted(started) == sorted([stale.pk, never.pk])


def test_a_due_shop_is_enqueued_once_per_interval_however_often_the_tick_runs(db, started):
    shop = woo_shop(slug="due", synced_until=None)

    assert enqueue_due_syncs(now=SYNCED_UNTIL) == 1
    assert enqueue_due_syncs(now=SYNCED_UNTIL + timedelta(seconds=10)) == 0
    assert started == [shop.pk]

    lock = LOCK_KEY.format(shop_id=shop.pk)
    assert 15 * 60 - 5 <= redis_client().ttl(lock) <= 15 * 60
    redis_client().delete(lock)  # what Redis does when the interval is over
    assert enqueue_due_syncs(now=SYNCED_UNTIL + timedelta(minutes=15)) == 1
    assert started == [shop.pk, shop.pk]


def test_broker_outage_releases_the_lock_so_the_next_tick_tries_again(db, monkeypatch):
    shop = woo_shop(slug="due", synced_until=None)

    def broker_down(shop_id: int) -> None:
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(tasks.sync_woocommerce_task, "delay", broker_down)
    assert enqueue_due_syncs(now=SYNCED_UNTIL) == 0
    assert not redis_client().exists(LOCK_KEY.format(shop_id=shop.pk))

    calls: list[int] = []
    monkeypatch.setattr(tasks.sync_woocommerce_task, "delay", lambda shop_id: calls.append(shop_id))
    assert enqueue_due_syncs(now=SYNCED_UNTIL + timedelta(seconds=10)) == 1
    assert calls == [shop.pk]
