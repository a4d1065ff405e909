"""The WooCommerce catch-up. WooCommerce never retries a failed webhook (and disables one
after five failures in a row), so the orders tick pulls the orders modified since the last
sync through the REST API (``GET /wp-json/wc/v3/orders``) and puts each into the inbox as
a pending delivery under the same dedupe key its webhook would have had: an order seen
both ways is stored, and processed, once."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db.models import Q, QuerySet

from orders.actions import receive_delivery
from orders.heartbeat import client as redis_client
from orders.models import Platform, Shop
from orders.platforms import woocommerce
from orders.platforms.base import Envelope, PayloadError, body_digest

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the REST API's maximum per_page
MAX_PAGES = 50
# A run stops paging after this long and saves how far it got: a task killed by its time
# limit saves nothing, and would start the same window again next time, for ever.
RUN_BUDGET_SECONDS = 120
# Each run starts this far before the last one ended, for clock skew between us and the
# shop; re-reading costs nothing, since the dedupe key stores a known state once.
OVERLAP = timedelta(minutes=5)
FIRST_LOOKBACK = timedelta(days=1)
TIMEOUT = (5, 30)
LOCK_KEY = "herald:woocommerce-sync:{shop_id}"


class CatchUpFailed(Exception):
    """One run could not finish; the message says why in words a shop owner can act on."""


def _interval() -> timedelta:
    return timedelta(minutes=settings.HERALD_WOOCOMMERCE_SYNC_MINUTES)


def due_shops(now: datetime) -> QuerySet[Shop]:
    """Active WooCommerce shops with API credentials not synced within the interval."""
    return (
        Shop.objects.filter(platform=Platform.WOOCOMMERCE, is_active=True)
        .exclude(api_url="")
        .exclude(api_key="")
        .exclude(api_secret="")
        .filter(Q(synced_until__isnull=True) | Q(synced_until__lt=now - _interval()))
        .order_by("pk")
    )


def enqueue_due_syncs(*, now: datetime) -> int:
    """Start a catch-up for each due shop, at most once per interval per shop however
    often the tick runs: a Redis ``SET NX`` lock that expires after the interval. A failed
    run leaves ``synced_until`` behind, so the shop is due again once the lock expires.
    Returns how many were started."""
    from orders.tasks import sync_woocommerce_task

    seconds = int(_interval().total_seconds())
    redis = redis_client()
    started = 0
    for shop_id in due_shops(now).values_list("pk", flat=True):
        lock = LOCK_KEY.format(shop_id=shop_id)
        if not redis.set(lock, now.isoformat(), nx=True, ex=seconds):
            continue
        try:
            sync_woocommerce_task.delay(shop_id)
        except Exception as exc:  # kombu raises several types for an unreachable broker
            redis.delete(lock)  # so the next tick tries again rather than in an interval
            log.warning("Could not enqueue the WooCommerce catch-up of shop %s (%s).", shop_id, exc)
            continue
        started += 1
    return started


def sync_woocommerce(*, shop_id: int, now: datetime, session: requests.Session | None = None) -> str:
    """Run one catch-up and keep what it said on the shop, for staff to see in the admin."""
    message = _sync_woocommerce(shop_id=shop_id, now=now, session=session)
    Shop.objects.filter(pk=shop_id).update(last_sync_message=message[:500])
    return message


def _sync_woocommerce(*, shop_id: int, now: datetime, session: requests.Session | None = None) -> str:
    """Pull the orders modified since ``Shop.synced_until`` (less ``OVERLAP``; the last day
    on a first run) into the inbox, oldest change first, following ``X-WP-TotalPages``.

    On success ``synced_until`` moves to ``now`` (or, when ``MAX_PAGES`` or the time budget
    stopped the run early, to the newest modification seen, where the next run resumes). On
    any failure it stays where it was, so the next run reads the same window again. Returns
    what happened.
    """
    shop = Shop.objects.filter(pk=shop_id).first()
    if shop is None:
        return f"Shop {shop_id} no longer exists; nothing to sync."
    unusable = _unusable(shop)
    if unusable:
        return f"{shop.slug}: {unusable}"
    since = (shop.synced_until or now - FIRST_LOOKBACK) - OVERLAP
    newest = shop.synced_until or since
    seen = stored = 0
    complete = False
    deadline = time.monotonic() + min(RUN_BUDGET_SECONDS, settings.CELERY_TASK_SOFT_TIME_LIMIT / 2)
    http = session or requests.Session()
    try:
        for page in range(1, MAX_PAGES + 1):
            orders, complete = _fetch_page(http, shop, since, page)
            for order in orders:
                seen += 1
                stored += _store(shop, order, now)
                newest = max(newest, _modified(shop, order) or newest)
            if complete:
                # Everything modified before this run started has been read.
                newest = max(newest, now)
                break
            if time.monotonic() > deadline:
                break
    except CatchUpFailed as failure:
        log.warning("WooCommerce catch-up of %s failed: %s", shop.slug, failure)
        return f"{shop.slug}: {failure} Herald tries again in {_interval_words()}."
    finally:
        if session is None:
            http.close()
    # Never backwards, should a slow run finish after a later one.
    Shop.objects.filter(pk=shop.pk).filter(Q(synced_until__isnull=True) | Q(synced_until__lt=newest)).update(
        synced_until=newest
    )
    result = f"{shop.slug}: {seen} orders seen, {stored} new"
    if not complete:
        result += f"; stopped early after page {page}, continues from {newest.isoformat()} next run"
    return result


def _unusable(shop: Shop) -> str:
    if shop.platform != Platform.WOOCOMMERCE:
        return "not a WooCommerce shop; nothing to sync."
    if not (shop.api_url and shop.api_key and shop.api_secret):
        return "set the API URL, consumer key and consumer secret to pull missed orders from WooCommerce."
    if not shop.api_url.lower().startswith("https://"):
        # Over plain HTTP WooCommerce ignores basic auth and wants OAuth 1.0a signatures.
        return (
            f"the API URL {shop.api_url} must start with https://; WooCommerce accepts a consumer key "
            "over HTTPS only."
        )
    return ""


def _interval_words() -> str:
    minutes = settings.HERALD_WOOCOMMERCE_SYNC_MINUTES
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def orders_url(shop: Shop) -> str:
    return shop.api_url.rstrip("/") + "/wp-json/wc/v3/orders"


def _fetch_page(
    http: requests.Session, shop: Shop, since: datetime, page: int
) -> tuple[list[dict[str, Any]], bool]:
    """One page of orders, and whether it is the last."""
    url = orders_url(shop)
    try:
        response = http.get(
            url,
            params={
                # dates_are_gmt makes WooCommerce compare with date_modified_gmt, not the
                # site's local time.
                "modified_after": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "dates_are_gmt": "true",
                "orderby": "modified",
                "order": "asc",
                "per_page": PAGE_SIZE,
                "page": page,
            },
            auth=(shop.api_key, shop.api_secret),
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise CatchUpFailed(f"Could not reach {url} ({type(exc).__name__}: {exc}).") from None
    if response.status_code != 200:
        raise CatchUpFailed(_explain(response, url))
    try:
        orders = response.json()
    except ValueError:
        raise CatchUpFailed(
            f"{url} answered 200 with something that is not JSON; a security plugin or a "
            "maintenance page may be in the way of the REST API."
        ) from None
    if not isinstance(orders, list):
        raise CatchUpFailed(f"{url} answered JSON that is not a list of orders.")
    return [o for o in orders if isinstance(o, dict)], _is_last_page(response, page, len(orders))


def _is_last_page(response: requests.Response, page: int, count: int) -> bool:
    try:
        total_pages = int(response.headers["X-WP-TotalPages"])
    except (KeyError, ValueError):
        # Without the header (a caching proxy may drop it), a short page is the last.
        return count < PAGE_SIZE
    return page >= total_pages


def _explain(response: requests.Response, url: str) -> str:
    status = response.status_code
    try:
        detail = response.json()
        said = _short(detail.get("message")) if isinstance(detail, dict) else ""
        code = _short(detail.get("code")) if isinstance(detail, dict) else ""
    except ValueError:
        said, code = response.text[:200].strip(), ""
    quoted = f" ({code}: {said})" if code else (f" ({said})" if said else "")
    if status in (401, 403):
        return (
            f"WooCommerce refused the consumer key with {status}{quoted}. Check the key and secret in the "
            "shop's settings and that the key has Read access; if they are right, the web server may be "
            "stripping the Authorization header."
        )
    if status == 404:
        return (
            f"No WooCommerce REST API at {url} (404){quoted}. Check that the API URL is the site's address "
            "and that WordPress permalinks are not set to 'Plain'."
        )
    if status == 400 and "modified_after" in said:
        return f"WooCommerce rejected modified_after{quoted}; it needs WooCommerce 5.8 or later."
    return f"WooCommerce at {url} answered {status}{quoted}."


def _short(value: object) -> str:
    return "" if value is None else str(value).strip()[:200]


def _store(shop: Shop, order: dict[str, Any], now: datetime) -> bool:
    body = json.dumps(order, separators=(",", ":"), ensure_ascii=False).encode()
    key = woocommerce.dedupe_key(shop, "order", order) or body_digest(body)
    _, created = receive_delivery(
        shop=shop,
        envelope=Envelope(topic="order.updated", dedupe_key=key),
        headers={"X-Herald-Source": "woocommerce-catch-up"},
        body=body,
        now=now,
        source="catch-up",
    )
    return created


def _modified(shop: Shop, order: dict[str, Any]) -> datetime | None:
    try:
        return woocommerce.modified_at(shop, order)
    except PayloadError:
        return None  # the delivery is stored; the worker reports the bad date
