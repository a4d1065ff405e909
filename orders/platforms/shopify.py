"""Shopify webhooks.

Authenticity: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body keyed
with the app's client secret. Topic from ``X-Shopify-Topic``. Shopify retries a
delivery and may send one event under several topics, so the dedupe key is the topic
and ``X-Shopify-Event-Id``.

Shopify has no single order status: we join the financial status, the fulfilment status,
the newest fulfilment's shipment status and the cancellation into one raw status
(``paid/fulfilled/in_transit``, ``cancelled:refunded/unfulfilled``) that the status map
turns into a canonical one.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime
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
    OrderPatched,
    OrderUpserted,
    PayloadError,
    PrivacyRequested,
    ShopEvent,
    StateReader,
    WebhookRejected,
    body_digest,
    hmac_sha256,
    require_header,
)
from orders.platforms.reading import (
    flag,
    ident,
    items,
    load_json_object,
    money,
    need,
    obj,
    optional_timestamp,
    quantity,
    text,
    timestamp,
)

PROTOCOL = "shopify"


def admit(*, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope:
    given = headers.get("X-Shopify-Hmac-Sha256", "").strip()
    if not given:
        raise WebhookRejected(401, "Missing the X-Shopify-Hmac-Sha256 header.")
    expected = base64.b64encode(hmac_sha256(shop.webhook_secret, body)).decode()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(401, "X-Shopify-Hmac-Sha256 does not match the body signed with this shop's secret.")
    topic = require_header(headers, "X-Shopify-Topic")
    event_id = headers.get("X-Shopify-Event-Id", "").strip() or headers.get("X-Shopify-Webhook-Id", "").strip()
    return Envelope(topic=topic, dedupe_key=f"{topic}:{event_id or body_digest(body)}")


# --- reading -----------------------------------------------------------------------


def _consent(customer: Mapping[str, Any], key: str, legacy: str | None = None) -> bool | None:
    consent = customer.get(key)
    if isinstance(consent, dict) and consent.get("state"):
        state = str(consent["state"])
        if state == "pending":  # double opt-in not confirmed yet
            return None
        return flag(state)
    return flag(customer.get(legacy)) if legacy else None


def read_customer(shop: Shop, data: Mapping[str, Any], where: str = "customer") -> CustomerData:
    zone = shop.zone
    created = optional_timestamp(data.get("created_at"), zone, f"{where}.created_at")
    address = obj(data, "default_address", where)
    return CustomerData(
        external_id=ident(data.get("id")),
        email=text(data.get("email")),
        phone=text(data.get("phone")) or text(address.get("phone")),
        first_name=text(data.get("first_name")),
        last_name=text(data.get("last_name")),
        locale=text(data.get("locale")),
        # Shopify's customer "state" is "enabled" once they have an account.
        registered_at=created if data.get("state") == "enabled" else None,
        accepts_email_marketing=_consent(data, "email_marketing_consent", "accepts_marketing"),
        accepts_sms_marketing=_consent(data, "sms_marketing_consent"),
        updated_at=optional_timestamp(data.get("updated_at"), zone, f"{where}.updated_at"),
    )


def _latest_fulfillment(order: Mapping[str, Any]) -> dict[str, Any]:
    fulfillments = [f for f in items(order, "fulfillments", "order") if f.get("status") != "cancelled"]
    if not fulfillments:
        return {}
    return max(fulfillments, key=lambda f: text(f.get("updated_at")) or text(f.get("created_at")))


def raw_status(order: Mapping[str, Any]) -> str:
    financial = text(order.get("financial_status")) or "pending"
    fulfillment = text(order.get("fulfillment_status")) or "unfulfilled"
    base = f"{financial}/{fulfillment}"
    if order.get("cancelled_at"):
        return f"cancelled:{base}"
    shipment = text(_latest_fulfillment(order).get("shipment_status"))
    return f"{base}/{shipment}" if shipment and fulfillment in {"fulfilled", "partial"} else base


def _shipping_total(order: Mapping[str, Any]) -> Decimal:
    price_set = obj(obj(order, "total_shipping_price_set", "order"), "shop_money", "total_shipping_price_set")
    if price_set.get("amount") is not None:
        return money(price_set["amount"], "total_shipping_price_set")
    return sum((money(line.get("price"), "shipping_lines.price") for line in items(order, "shipping_lines")), Decimal("0"))


def _address(order: Mapping[str, Any]) -> dict[str, str]:
    address = obj(order, "shipping_address", "order")
    keys = ("name", "address1", "address2", "city", "zip", "province", "country", "country_code", "phone", "company")
    return {k: text(address.get(k)) for k in keys if address.get(k)}


def read_order(shop: Shop, data: Mapping[str, Any]) -> OrderData:
    zone = shop.zone
    problems: list[str] = []
    lines = [
        LineData(
            external_id=ident(line.get("id")),
            product_external_id=ident(line.get("product_id")),
            sku=text(line.get("sku")),
            name=text(line.get("name")) or text(line.get("title")),
            quantity=quantity(line.get("quantity"), "line_items.quantity"),
            price=money(line.get("price"), "line_items.price"),
            total=money(line.get("price"), "line_items.price") * quantity(line.get("quantity"), "line_items.quantity"),
        )
        for line in items(data, "line_items", "order")
    ]
    fulfillment = _latest_fulfillment(data)
    customer = obj(data, "customer", "order")
    created_at = timestamp(need(data, "created_at", "order"), zone, "created_at", problems)
    updated_at = timestamp(data["updated_at"], zone, "updated_at", problems) if data.get("updated_at") else created_at
    return OrderData(
        external_id=ident(need(data, "id", "order")),
        number=text(data.get("name")) or text(data.get("order_number")),
        raw_status=raw_status(data),
        placed_at=timestamp(data.get("processed_at") or data["created_at"], zone, "processed_at", problems),
        updated_at=updated_at,
        currency=text(data.get("currency")),
        subtotal=money(data.get("subtotal_price"), "subtotal_price"),
        shipping_total=_shipping_total(data),
        tax_total=money(data.get("total_tax"), "total_tax"),
        discount_total=money(data.get("total_discounts"), "total_discounts"),
        total=money(data.get("total_price"), "total_price"),
        customer=read_customer(shop, customer) if customer else None,
        email=text(data.get("email")) or text(data.get("contact_email")),
        lines=lines,
        shipping_address=_address(data),
        tracking_number=text(fulfillment.get("tracking_number")),
        carrier=text(fulfillment.get("tracking_company")),
        tracking_url=text(fulfillment.get("tracking_url")),
        problems=problems,
    )


# --- topics ------------------------------------------------------------------------


def _order(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
    order = read_order(shop, data)
    if order.customer is not None and not order.customer.email and not order.customer.phone:
        order.customer.email = order.email
    return [OrderUpserted(order)]


def _order_deleted(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
    return [OrderDeleted(external_id=ident(need(data, "id")))]


def _with_segment(raw: str, *, financial: str | None = None, shipment: str | None = None) -> str:
    cancelled, _, rest = raw.rpartition("cancelled:")
    parts = (rest or raw).split("/")
    parts += ["unfulfilled"] * (2 - len(parts))
    if financial:
        parts[0] = financial
    if shipment:
        parts = parts[:2] + [shipment]
    return ("cancelled:" if raw.startswith("cancelled:") else "") + "/".join(parts)


def _fulfillment(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
    order_id = ident(need(data, "order_id", "fulfillment"))
    updated = timestamp(data.get("updated_at") or need(data, "created_at", "fulfillment"), shop.zone, "updated_at")
    current = state.order(order_id)
    raw = None
    if current is not None and data.get("status") == "success":
        shipment = text(data.get("shipment_status"))
        raw = _with_segment(current.raw_status, shipment=shipment or None)
        if "/unfulfilled" in raw and not raw.startswith("cancelled:"):
            raw = raw.replace("/unfulfilled", "/fulfilled")
    numbers = data.get("tracking_numbers") or []
    return [
        OrderPatched(
            external_id=order_id,
            updated_at=updated,
            raw_status=raw,
            tracking_number=text(data.get("tracking_number")) or (text(numbers[0]) if numbers else ""),
            carrier=text(data.get("tracking_company")),
            tracking_url=text(data.get("tracking_url")) or text((data.get("tracking_urls") or [""])[0]),
        )
    ]


def _refund(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
    order_id = ident(need(data, "order_id", "refund"))
    created = timestamp(data.get("processed_at") or need(data, "created_at", "refund"), shop.zone, "created_at")
    refunded = sum(
        (
            money(t.get("amount"), "transactions.amount")
            for t in items(data, "transactions", "refund")
            if t.get("kind") == "refund" and t.get("status") in (None, "success")
        ),
        Decimal("0"),
    )
    current = state.order(order_id)
    raw = None
    if current is not None and refunded > 0:
        # The orders/updated that follows carries Shopify's own verdict and wins by time.
        financial = "refunded" if refunded >= current.total else "partially_refunded"
        raw = _with_segment(current.raw_status, financial=financial)
    return [OrderPatched(external_id=order_id, updated_at=created, raw_status=raw)]


def _customer(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
    return [CustomerUpserted(read_customer(shop, data))]


def _privacy(kind: str) -> Callable[[Shop, dict[str, Any], StateReader], list[ShopEvent]]:
    def parse(shop: Shop, data: dict[str, Any], state: StateReader) -> list[ShopEvent]:
        customer = obj(data, "customer")
        orders = data.get("orders_to_redact") or data.get("orders_requested") or []
        return [
            PrivacyRequested(
                kind=kind,
                customer_external_id=ident(customer.get("id")),
                email=text(customer.get("email")),
                order_ids=[ident(o) for o in orders] if isinstance(orders, list) else [],
            )
        ]

    return parse


TOPICS: dict[str, Callable[[Shop, dict[str, Any], StateReader], list[ShopEvent]]] = {
    "orders/create": _order,
    "orders/updated": _order,
    "orders/paid": _order,
    "orders/cancelled": _order,
    "orders/fulfilled": _order,
    "orders/partially_fulfilled": _order,
    "orders/delete": _order_deleted,
    "refunds/create": _refund,
    "fulfillments/create": _fulfillment,
    "fulfillments/update": _fulfillment,
    "customers/create": _customer,
    "customers/update": _customer,
    "customers/enable": _customer,
    "customers/data_request": _privacy("customers/data_request"),
    "customers/redact": _privacy("customers/redact"),
    "shop/redact": _privacy("shop/redact"),
}


def parse(*, shop: Shop, topic: str, body: bytes, state: StateReader) -> list[ShopEvent]:
    handler = TOPICS.get(topic)
    if handler is None:
        raise PayloadError(
            f"Shopify topic {topic!r} is not one Herald processes; remove that subscription or ask for support."
        )
    return handler(shop, load_json_object(body), state)
