"""WooCommerce webhooks (and the REST catch-up that makes up for their lack of retries).

Authenticity: ``X-WC-Webhook-Signature`` is the base64 HMAC-SHA256 of the raw body keyed
with the webhook's secret. Topic from ``X-WC-Webhook-Topic`` (``order.created``).
When a webhook is saved WooCommerce posts an unsigned ``webhook_id=N`` form ping,
answered 200 and not stored. The delivery id repeats within a second, so the dedupe key
is the resource, its id and its ``date_modified_gmt``; the catch-up builds the same key,
so an order seen by both is processed once.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.models import Shop
from orders.platforms.base import (
    CustomerData,
    CustomerUpserted,
    Envelope,
    LineData,
    OrderData,
    OrderDeleted,
    OrderUpserted,
    PayloadError,
    ShopEvent,
    StateReader,
    WebhookRejected,
    body_digest,
    hmac_sha256,
    require_header,
)
from orders.platforms.reading import (
    ident,
    items,
    load_json_object,
    money,
    need,
    obj,
    quantity,
    text,
    timestamp,
)

PROTOCOL = "woocommerce"
_PING = re.compile(rb"^webhook_id=\d+$")


def dedupe_key(resource: str, data: Mapping[str, Any]) -> str | None:
    resource_id = ident(data.get("id"))
    modified = text(data.get("date_modified_gmt")) or text(data.get("date_modified"))
    if not resource_id:
        return None
    return f"{resource}:{resource_id}:{modified}"


def admit(*, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope | None:
    given = headers.get("X-WC-Webhook-Signature", "").strip()
    if not given and _PING.match(body.strip()):
        return None  # WooCommerce's test ping when the webhook is saved
    if not given:
        raise WebhookRejected(401, "Missing the X-WC-Webhook-Signature header.")
    expected = base64.b64encode(hmac_sha256(shop.webhook_secret, body)).decode()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(401, "X-WC-Webhook-Signature does not match the body signed with this shop's secret.")
    topic = require_header(headers, "X-WC-Webhook-Topic")
    key = None
    try:
        key = dedupe_key(topic.split(".")[0], load_json_object(body))
    except PayloadError:
        pass  # stored anyway, and failed with its reason by the worker
    return Envelope(topic=topic, dedupe_key=key or body_digest(body))


def _gmt(data: Mapping[str, Any], name: str, shop: Shop, problems: list[str] | None = None) -> datetime | None:
    """WooCommerce sends ``<name>_gmt`` (UTC without an offset) beside ``<name>`` in the
    site's zone; prefer the former."""
    if data.get(f"{name}_gmt"):
        return timestamp(data[f"{name}_gmt"], UTC, f"{name}_gmt")  # type: ignore[arg-type]
    if data.get(name):
        return timestamp(data[name], shop.zone, name, problems)
    return None


def read_customer(shop: Shop, data: Mapping[str, Any], registered: bool) -> CustomerData:
    billing = obj(data, "billing", "customer")
    return CustomerData(
        external_id=ident(data.get("id")),
        email=text(data.get("email")) or text(billing.get("email")),
        phone=text(billing.get("phone")),
        first_name=text(data.get("first_name")) or text(billing.get("first_name")),
        last_name=text(data.get("last_name")) or text(billing.get("last_name")),
        registered_at=_gmt(data, "date_created", shop) if registered else None,
        updated_at=_gmt(data, "date_modified", shop),
    )


def _tracking(data: Mapping[str, Any]) -> dict[str, str]:
    # The WooCommerce Shipment Tracking extension keeps its entries in the order's meta data.
    for meta in items(data, "meta_data", "order"):
        if meta.get("key") == "_wc_shipment_tracking_items" and isinstance(meta.get("value"), list) and meta["value"]:
            entry = meta["value"][-1]
            if isinstance(entry, dict):
                return {
                    "tracking_number": text(entry.get("tracking_number")),
                    "carrier": text(entry.get("custom_tracking_provider")) or text(entry.get("tracking_provider")),
                    "tracking_url": text(entry.get("custom_tracking_link")),
                }
    return {}


def read_order(shop: Shop, data: Mapping[str, Any]) -> OrderData:
    problems: list[str] = []
    billing = obj(data, "billing", "order")
    shipping = obj(data, "shipping", "order")
    placed = _gmt(data, "date_created", shop, problems)
    if placed is None:
        raise PayloadError("The order has no 'date_created_gmt' or 'date_created'.")
    lines = []
    for line in items(data, "line_items", "order"):
        image = line.get("image") if isinstance(line.get("image"), dict) else {}
        lines.append(
            LineData(
                external_id=ident(line.get("id")),
                product_external_id=ident(line.get("variation_id")) or ident(line.get("product_id")),
                sku=text(line.get("sku")),
                name=text(line.get("name")),
                quantity=quantity(line.get("quantity"), "line_items.quantity"),
                price=money(line.get("price"), "line_items.price"),
                total=money(line.get("total"), "line_items.total"),
                image_url=text(image.get("src")),
            )
        )
    subtotal = sum((money(li.get("subtotal"), "line_items.subtotal") for li in items(data, "line_items")), Decimal("0"))
    tracking = _tracking(data)
    address_keys = ("first_name", "last_name", "company", "address_1", "address_2", "city", "state", "postcode", "country")
    return OrderData(
        external_id=ident(need(data, "id", "order")),
        number=text(data.get("number")) or ident(data.get("id")),
        raw_status=text(need(data, "status", "order")),
        placed_at=placed,
        updated_at=_gmt(data, "date_modified", shop, problems) or placed,
        currency=text(data.get("currency")),
        subtotal=subtotal,
        shipping_total=money(data.get("shipping_total"), "shipping_total"),
        tax_total=money(data.get("total_tax"), "total_tax"),
        discount_total=money(data.get("discount_total"), "discount_total"),
        total=money(data.get("total"), "total"),
        customer=CustomerData(
            external_id=ident(data.get("customer_id")),
            email=text(billing.get("email")),
            phone=text(billing.get("phone")),
            first_name=text(billing.get("first_name")),
            last_name=text(billing.get("last_name")),
        ),
        email=text(billing.get("email")),
        lines=lines,
        shipping_address={k: text(shipping.get(k)) for k in address_keys if shipping.get(k)},
        tracking_number=tracking.get("tracking_number", ""),
        carrier=tracking.get("carrier", ""),
        tracking_url=tracking.get("tracking_url", ""),
        problems=problems,
    )


def _order(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [OrderUpserted(read_order(shop, data))]


def _order_deleted(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [OrderDeleted(external_id=ident(need(data, "id")))]


def _customer_created(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [CustomerUpserted(read_customer(shop, data, registered=True), registered=True)]


def _customer_updated(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [CustomerUpserted(read_customer(shop, data, registered=True))]


TOPICS: dict[str, Callable[[Shop, dict[str, Any]], list[ShopEvent]]] = {
    "order.created": _order,
    "order.updated": _order,
    "order.restored": _order,
    "order.deleted": _order_deleted,
    "customer.created": _customer_created,
    "customer.updated": _customer_updated,
}


def parse(*, shop: Shop, topic: str, body: bytes, state: StateReader) -> list[ShopEvent]:
    handler = TOPICS.get(topic)
    if handler is None:
        raise PayloadError(f"WooCommerce topic {topic!r} is not one Herald processes; remove that webhook.")
    return handler(shop, load_json_object(body))
