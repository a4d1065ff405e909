"""WooCommerce webhooks (the REST catch-up that makes up for their lack of retries lives
in ``orders.catchup`` and shares the dedupe key built here).

Authenticity: ``X-WC-Webhook-Signature`` is the base64 HMAC-SHA256 of the raw body keyed
with the webhook's secret. Topic from ``X-WC-Webhook-Topic`` (``order.created``). When a
webhook is saved WooCommerce posts an unsigned ``webhook_id=N`` form as a ping, answered
200 and not stored. Payloads are the REST API v3 resource, built when the delivery is sent.

Dedupe: ``X-WC-Webhook-Delivery-ID`` is a hash of the webhook id and the current second,
so two different deliveries within a second share it. The key is instead the resource,
its id and its ``date_modified_gmt`` (``order:727:2026-11-20T21:15:47Z``): the same state
delivered as ``order.created`` and ``order.updated``, or pulled by the catch-up, lands once.
"""

from __future__ import annotations

import base64
import hmac
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from babel import Locale

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
GMT = zoneinfo.ZoneInfo("UTC")
_PING = re.compile(rb"^webhook_id=\d+$")
_LEGACY = (
    "This webhook sends the legacy API format. In WooCommerce > Settings > Advanced > Webhooks, "
    "set its API version to 'WP REST API Integration v3'."
)


# --- admission ---------------------------------------------------------------------

# WooCommerce keys the HMAC with wp_specialchars_decode(secret, ENT_QUOTES): a secret
# copied from the REST API (or stored entity-encoded) differs from the key it signs with.
_WP_ENTITY = re.compile(r"&(?:(lt|gt|quot|amp)|#0*(39|34|60|62|38)|#[xX]0*(27|22|26));")
_NAMED = {"lt": "<", "gt": ">", "quot": '"', "amp": "&"}


def _wp_specialchars_decode(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match[1]:
            return _NAMED[match[1]]
        return chr(int(match[2])) if match[2] else chr(int(match[3], 16))

    return _WP_ENTITY.sub(one, value)


def _signed_by(secret: str, body: bytes, given: str) -> bool:
    for key in dict.fromkeys((secret, _wp_specialchars_decode(secret))):
        expected = base64.b64encode(hmac_sha256(key, body)).decode()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
    return False


def dedupe_key(shop: Shop, resource: str, data: Mapping[str, Any]) -> str | None:
    """``<resource>:<id>:<date_modified in UTC>``, or None when the payload has no id.
    The webhook and the catch-up both build it, so a state seen both ways is stored once."""
    resource_id = ident(data.get("id"))
    if not resource_id:
        return None
    try:
        modified = modified_at(shop, data)
    except PayloadError:
        modified = None  # stored anyway; the worker fails it with the reason
    stamp = (
        modified.strftime("%Y-%m-%dT%H:%M:%SZ")
        if modified
        else text(data.get("date_modified_gmt")) or text(data.get("date_modified"))
    )
    return f"{resource}:{resource_id}:{stamp}"


def _delivery_key(shop: Shop, topic: str, headers: Mapping[str, str], body: bytes) -> str:
    resource, _, event = topic.partition(".")
    try:
        data = load_json_object(body)
    except PayloadError:
        return body_digest(body)  # stored anyway; the worker fails it with the reason
    resource_id = ident(data.get("id"))
    if event == "deleted" and resource_id:
        # A deletion may carry only the id, and an order can be trashed, restored and
        # trashed again; the delivery id tells two deletions apart.
        delivery = headers.get("X-WC-Webhook-Delivery-ID", "").strip()
        return f"{topic}:{resource_id}:{delivery or body_digest(body)}"
    return dedupe_key(shop, resource, data) or body_digest(body)


def admit(*, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope | None:
    given = headers.get("X-WC-Webhook-Signature", "").strip()
    if not given and _PING.match(body.strip()):
        return None  # WooCommerce's unsigned ping when the webhook is saved
    if not given:
        raise WebhookRejected(401, "Missing the X-WC-Webhook-Signature header.")
    if not _signed_by(shop.webhook_secret, body, given):
        raise WebhookRejected(
            401,
            "X-WC-Webhook-Signature does not match the body signed with this shop's secret; "
            "copy the webhook's secret from WooCommerce into the shop's settings.",
        )
    topic = require_header(headers, "X-WC-Webhook-Topic")
    return Envelope(topic=topic, dedupe_key=_delivery_key(shop, topic, headers, body))


# --- reading -----------------------------------------------------------------------


def _gmt(data: Mapping[str, Any], name: str, shop: Shop, problems: list[str] | None = None) -> datetime | None:
    """WooCommerce sends ``<name>_gmt`` (UTC written without an offset) beside ``<name>``
    in the site's zone; prefer the former."""
    if data.get(f"{name}_gmt"):
        return timestamp(data[f"{name}_gmt"], GMT, f"{name}_gmt")
    if data.get(name):
        return timestamp(data[name], shop.zone, name, problems)
    return None


def modified_at(shop: Shop, data: Mapping[str, Any]) -> datetime | None:
    """When WooCommerce last modified the resource, in UTC. Raises ``PayloadError``."""
    return _gmt(data, "date_modified", shop)


@lru_cache(maxsize=1)
def _territories() -> Mapping[str, str]:
    return dict(Locale("en").territories)


def _address(address: Mapping[str, Any]) -> dict[str, str]:
    """The shipping address in the shape every platform module gives (Shopify's names)."""
    code = text(address.get("country")).upper()
    fields = {
        "name": f"{text(address.get('first_name'))} {text(address.get('last_name'))}".strip(),
        "company": text(address.get("company")),
        "address1": text(address.get("address_1")),
        "address2": text(address.get("address_2")),
        "city": text(address.get("city")),
        "province": text(address.get("state")),
        "zip": text(address.get("postcode")),
        "country": _territories().get(code, code) if code else "",
        "country_code": code[:2] if len(code) == 2 else "",
        "phone": text(address.get("phone")),
    }
    return {k: v for k, v in fields.items() if v}


# The Shipment Tracking extension stores a provider's slug (sanitize_title of its name)
# and builds the link from its own table; these are the carriers most shops pick.
_CARRIERS: dict[str, tuple[str, str]] = {
    "usps": ("USPS", "https://tools.usps.com/go/TrackConfirmAction_input?qtc_tLabels1={number}"),
    "ups": ("UPS", "https://www.ups.com/track?tracknum={number}"),
    "fedex": ("FedEx", "https://www.fedex.com/fedextrack/?trknbr={number}"),
    "royal-mail": ("Royal Mail", "https://www.royalmail.com/track-your-item#/tracking-results/{number}"),
    "australia-post": ("Australia Post", "https://auspost.com.au/mypost/track/#/details/{number}"),
    "canada-post": (
        "Canada Post",
        "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor={number}",
    ),
}


def _tracking(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(number, carrier, url) of the newest entry of the Shipment Tracking extension's
    ``_wc_shipment_tracking_items`` order meta, which the REST API returns unserialised."""
    for meta in items(data, "meta_data", "order"):
        value = meta.get("value")
        if meta.get("key") != "_wc_shipment_tracking_items" or not isinstance(value, list):
            continue
        entries = [e for e in value if isinstance(e, dict) and text(e.get("tracking_number"))]
        if not entries:
            return "", "", ""
        entry = entries[-1]  # the extension appends; the last one is the newest shipment
        number = text(entry.get("tracking_number"))
        custom = text(entry.get("custom_tracking_provider"))
        if custom:
            return number, custom, text(entry.get("custom_tracking_link"))
        slug = text(entry.get("tracking_provider"))
        name, template = _CARRIERS.get(slug.lower(), (slug, ""))
        return number, name, template.format(number=quote(number, safe="")) if template else ""
    return "", "", ""


def read_customer(shop: Shop, data: Mapping[str, Any]) -> CustomerData:
    """A WooCommerce customer resource: always an account, so ``date_created`` is when
    they registered."""
    billing = obj(data, "billing", "customer")
    return CustomerData(
        external_id=ident(data.get("id")),
        email=text(data.get("email")) or text(billing.get("email")),
        phone=text(billing.get("phone")),
        first_name=text(data.get("first_name")) or text(billing.get("first_name")),
        last_name=text(data.get("last_name")) or text(billing.get("last_name")),
        registered_at=_gmt(data, "date_created", shop),
        updated_at=_gmt(data, "date_modified", shop),
    )


def _line(line: Mapping[str, Any]) -> LineData:
    image = line.get("image") if isinstance(line.get("image"), dict) else {}
    return LineData(
        external_id=ident(line.get("id")),
        # The parent product, not the variation: recommendations and views are per product.
        product_external_id=ident(line.get("product_id")) or ident(line.get("variation_id")),
        sku=text(line.get("sku")),
        name=text(line.get("name")),
        quantity=quantity(line.get("quantity"), "line_items.quantity"),
        price=money(line.get("price"), "line_items.price"),
        total=money(line.get("total"), "line_items.total"),
        image_url=text(image.get("src")) if image else "",
    )


def read_order(shop: Shop, data: Mapping[str, Any]) -> OrderData:
    problems: list[str] = []
    billing = obj(data, "billing", "order")
    placed = _gmt(data, "date_created", shop, problems)
    if placed is None:
        raise PayloadError("The order has no 'date_created_gmt' or 'date_created'.")
    line_items = items(data, "line_items", "order")
    number, carrier, url = _tracking(data)
    email = text(billing.get("email"))
    return OrderData(
        external_id=ident(need(data, "id", "order")),
        number=text(data.get("number")) or ident(data.get("id")),
        raw_status=text(need(data, "status", "order")),
        placed_at=placed,
        updated_at=_gmt(data, "date_modified", shop, problems) or placed,
        currency=text(data.get("currency")),
        subtotal=sum((money(li.get("subtotal"), "line_items.subtotal") for li in line_items), Decimal("0")),
        shipping_total=money(data.get("shipping_total"), "shipping_total"),
        tax_total=money(data.get("total_tax"), "total_tax"),
        discount_total=money(data.get("discount_total"), "discount_total"),
        total=money(data.get("total"), "total"),
        # customer_id 0 is a guest: ident() reads it as no id, so they join by email.
        customer=CustomerData(
            external_id=ident(data.get("customer_id")),
            email=email,
            phone=text(billing.get("phone")),
            first_name=text(billing.get("first_name")),
            last_name=text(billing.get("last_name")),
        ),
        email=email,
        lines=[_line(line) for line in line_items],
        shipping_address=_address(obj(data, "shipping", "order")),
        tracking_number=number,
        carrier=carrier,
        tracking_url=url,
        problems=problems,
    )


# --- topics ------------------------------------------------------------------------


def _order(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [OrderUpserted(read_order(shop, data))]


def _order_deleted(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [OrderDeleted(external_id=ident(need(data, "id", "order")))]


def _customer_created(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [CustomerUpserted(read_customer(shop, data), registered=True)]


def _customer_updated(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    return [CustomerUpserted(read_customer(shop, data))]


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
        raise PayloadError(
            f"WooCommerce topic {topic!r} is not one Herald processes; delete that webhook in "
            "WooCommerce > Settings > Advanced > Webhooks."
        )
    data = load_json_object(body)
    resource = topic.partition(".")[0]
    if "id" not in data and isinstance(data.get(resource), dict):
        raise PayloadError(_LEGACY)
    return handler(shop, data)
