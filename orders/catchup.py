"""WooCommerce never retries a failed webhook, so the orders tick pulls orders modified
since the last sync through the WooCommerce REST API (``/wp-json/wc/v3/orders``) and
puts each into the inbox under the same dedupe key a webhook would have used."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import requests
from django.conf import settings

from orders.actions import receive_delivery
from orders.heartbeat import client as redis_client
from orders.models import Platform, Shop
from orders.platforms import woocommerce
from orders.platforms.base import Envelope, PayloadError, body_digest
from orders.platforms.reading import text, timestamp

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 50
# Webhooks and the catch-up overlap by this much; the dedupe key makes that free.
OVERLAP = timedelta(minutes=5)
TIMEOUT = (5, 30)


def due_shops(now: datetime) -> list[Shop]:
    cutoff = now - timedelta(minutes=settings.HERALD_WOOCOMMERCE_SYNC_MINUTES)
    return [
        shop
        for shop in Shop.objects.filter(platform=Platform.WOOCOMMERCE, is_active=True).exclude(api_url="").exclude(api_key="")
        if shop.synced_until is None or shop.synced_until < cutoff
    ]


def enqueue_due_syncs(*, now: datetime) -> int:
    from orders.tasks import sync_woocommerce_task

    started = 0
    for shop in due_shops(now):
        # One catch-up per shop per interval, even if the tick runs every few seconds.
        lock = f"herald:woocommerce-sync:{shop.pk}"
        if redis_client().set(lock, now.isoformat(), nx=True, ex=settings.HERALD_WOOCOMMERCE_SYNC_MINUTES * 60):
            sync_woocommerce_task.delay(shop.pk)
            started += 1
    return started


def sync_woocommerce(*, shop_id: int, now: datetime, session: requests.Session | None = None) -> str:
    shop = Shop.objects.get(pk=shop_id)
    since = (shop.synced_until or now - timedelta(days=1)) - OVERLAP
    http = session or requests.Session()
    url = shop.api_url.rstrip("/") + "/wp-json/wc/v3/orders"
    stored = seen = 0
    newest = shop.synced_until or since
    for page in range(1, MAX_PAGES + 1):
        try:
            response = http.get(
                url,
                params={
                    "modified_after": since.strftime("%Y-%m-%dT%H:%M:%S"),
                    "dates_are_gmt": "true",
                    "orderby": "modified",
                    "order": "asc",
                    "per_page": PAGE_SIZE,
                    "page": page,
                },
                auth=(shop.api_key, shop.api_secret),
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            log.warning("WooCommerce catch-up for %s failed: %s", shop.slug, exc)
            return f"{shop.slug}: request failed ({exc}); will try again"
        if response.status_code != 200:
            return f"{shop.slug}: WooCommerce answered {response.status_code}: {response.text[:200]}"
        try:
            orders = response.json()
        except ValueError:
            return f"{shop.slug}: WooCommerce answered something that is not JSON"
        if not isinstance(orders, list):
            return f"{shop.slug}: WooCommerce answered JSON that is not a list of orders"
        for order in orders:
            if not isinstance(order, dict):
                continue
            seen += 1
            body = json.dumps(order, separators=(",", ":")).encode()
            key = woocommerce.dedupe_key("order", order) or body_digest(body)
            _, created = receive_delivery(
                shop=shop,
                envelope=Envelope(topic="order.updated", dedupe_key=key),
                headers={"X-Herald-Source": "woocommerce-catch-up"},
                body=body,
                now=now,
                source="catch-up",
            )
            stored += created
            modified = text(order.get("date_modified_gmt"))
            if modified:
                try:
                    newest = max(newest, timestamp(modified, UTC, "date_modified_gmt"))  # type: ignore[arg-type]
                except PayloadError:
                    pass  # the delivery is stored; the worker reports the bad date
        total_pages = int(response.headers.get("X-WP-TotalPages", page) or page)
        if page >= total_pages or len(orders) < PAGE_SIZE:
            # Everything modified up to now has been seen.
            newest = max(newest, now)
            break
    Shop.objects.filter(pk=shop.pk).update(synced_until=newest)
    return f"{shop.slug}: {seen} orders seen, {stored} new"
