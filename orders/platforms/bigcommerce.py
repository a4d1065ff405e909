"""BigCommerce webhooks.

Authenticity: BigCommerce does not sign webhook bodies. Staff put this shop's webhook
secret in the subscription's ``headers`` (``{"X-Herald-Webhook-Secret": "<secret>"}``
when creating it with ``POST /v3/hooks``), and BigCommerce sends that header with every
delivery; we compare it in constant time. The topic is the body's ``scope``
(``store/order/created``). The ``hash`` is a digest of the body's ``data`` (ids only), so the
dedupe key is the scope, that hash and the delivery's ``created_at``.

Bodies carry ids only (``{"type": "order", "id": 250}``), so ``parse`` fetches the
resource from the BigCommerce API with the shop's access token: the v2 order with its
products and shipments, the v3 customer, and the v3 newsletter subscriber for consent.
``admit`` never touches the network; ``parse`` runs in the worker.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

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
    ShopEvent,
    StateReader,
    WebhookRejected,
    body_digest,
)
from orders.platforms.reading import ident, load_json_object, money, need, obj, quantity, text, timestamp

PROTOCOL = "bigcommerce"
SECRET_HEADER = "X-Herald-Webhook-Secret"

# One pooled session per worker process; (connect, read) seconds.
SESSION = requests.Session()
TIMEOUT = (5, 30)
# The v2 list endpoints answer 50 rows unless asked for more; 250 is their maximum.
PAGE_SIZE = 250
MAX_PAGES = 20

# The v2 ``status_id`` values, for an order whose ``status`` text is missing.
STATUS_NAMES = {
    0: "Incomplete",
    1: "Pending",
    2: "Shipped",
    3: "Partially Shipped",
    4: "Refunded",
    5: "Cancelled",
    6: "Declined",
    7: "Awaiting Payment",
    8: "Awaiting Pickup",
    9: "Awaiting Shipment",
    10: "Completed",
    11: "Awaiting Fulfillment",
    12: "Manual Verification Required",
    13: "Disputed",
    14: "Partially Refunded",
}


def admit(*, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope:
    given = headers.get(SECRET_HEADER, "").strip()
    if not given:
        raise WebhookRejected(
            401,
            f"Missing the {SECRET_HEADER} header. Add it to the webhook's headers in BigCommerce "
            "with this shop's webhook secret as its value.",
        )
    if not hmac.compare_digest(given.encode(), shop.webhook_secret.encode()):
        raise WebhookRejected(401, f"{SECRET_HEADER} does not match this shop's webhook secret.")
    try:
        data = load_json_object(body)
    except PayloadError:
        # Authentic but unreadable: stored, then failed with its reason by the worker.
        return Envelope(topic="unknown", dedupe_key=body_digest(body))
    scope = text(data.get("scope"))
    if not scope:
        raise WebhookRejected(400, "The body has no 'scope'; it is not a BigCommerce webhook callback.")
    # The hash covers only ``data`` ({"type": "order", "id": 250}), the same for every
    # update of one order; its ``created_at`` tells two updates apart, and stays the same
    # when BigCommerce retries one.
    digest = text(data.get("hash")) or body_digest(body)
    return Envelope(topic=scope, dedupe_key=f"{scope}:{digest}:{text(data.get('created_at'))}")


# --- the BigCommerce API ---------------------------------------------------------------


def _base_url(shop: Shop) -> str:
    if not shop.api_url or not shop.api_key:
        raise PayloadError(
            f"Shop {shop.name!r} has no BigCommerce API credentials. Fill in its API URL "
            "(https://api.bigcommerce.com/stores/<store_hash>) and its API key (the API account's "
            "access token) on the shop, then replay this delivery."
        )
    # Staff often paste the URL with the version BigCommerce shows beside it.
    return re.sub(r"/v[23]$", "", shop.api_url.rstrip("/"))


def _get(shop: Shop, path: str, *, what: str, missing: str, params: Mapping[str, object] | None = None) -> Any:
    """GET a BigCommerce API path and return its JSON, or None for 204 (v2's answer for an
    empty list). Raises ``PayloadError``, with ``retry`` for what a later attempt may fix."""
    url = _base_url(shop) + path
    try:
        response = SESSION.get(
            url,
            params=params,
            headers={"X-Auth-Token": shop.api_key, "Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.Timeout:
        raise PayloadError(f"BigCommerce did not answer in time when fetching {what}.", retry=True) from None
    except requests.RequestException as exc:
        raise PayloadError(f"Could not reach BigCommerce to fetch {what} ({type(exc).__name__}).", retry=True) from None
    status = response.status_code
    if status == 204:
        return None
    if status in (401, 403):
        raise PayloadError(
            f"BigCommerce refused the access token of shop {shop.name!r} (HTTP {status}) when fetching {what}. "
            "Check that the shop's API key is the access token of a BigCommerce API account whose "
            "Orders and Customers scopes are at least read-only, and that its API URL names the right store."
        )
    if status == 404:
        raise PayloadError(missing)
    if status == 429:
        raise PayloadError(f"BigCommerce's rate limit was reached when fetching {what}.", retry=True)
    if status >= 500:
        raise PayloadError(f"BigCommerce answered HTTP {status} when fetching {what}.", retry=True)
    if status != 200:
        raise PayloadError(f"BigCommerce answered HTTP {status} when fetching {what}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise PayloadError(
            f"BigCommerce answered something that is not JSON when fetching {what}.", retry=True
        ) from None


def _get_list(shop: Shop, path: str, *, what: str, missing: str) -> list[dict[str, Any]]:
    """All pages of a v2 list endpoint."""
    rows: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        answer = _get(shop, path, what=what, missing=missing, params={"limit": PAGE_SIZE, "page": page})
        if answer is None:
            break
        if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
            raise PayloadError(f"BigCommerce answered {what} with JSON that is not a list of objects.")
        rows.extend(answer)
        if len(answer) < PAGE_SIZE:
            break
    return rows


def _v3_rows(answer: Any, what: str) -> list[dict[str, Any]]:
    rows = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise PayloadError(f"BigCommerce answered {what} without a 'data' list of objects.")
    return rows


def fetch_order(shop: Shop, order_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    gone = f"Order {order_id} no longer exists at BigCommerce."
    order = _get(shop, f"/v2/orders/{order_id}", what=f"order {order_id}", missing=gone)
    if not isinstance(order, dict):
        raise PayloadError(f"BigCommerce answered order {order_id} with JSON that is not an object.")
    products = _get_list(
        shop, f"/v2/orders/{order_id}/products", what=f"the products of order {order_id}", missing=gone
    )
    shipments = _get_list(
        shop, f"/v2/orders/{order_id}/shipments", what=f"the shipments of order {order_id}", missing=gone
    )
    return order, products, shipments


def fetch_customer(shop: Shop, customer_id: str) -> dict[str, Any]:
    gone = f"Customer {customer_id} no longer exists at BigCommerce."
    # Built by hand: BigCommerce documents the filter with a literal colon.
    answer = _get(shop, f"/v3/customers?id:in={customer_id}", what=f"customer {customer_id}", missing=gone)
    rows = _v3_rows(answer, f"customer {customer_id}")
    if not rows:
        raise PayloadError(gone)
    return rows[0]


def fetch_subscriber(shop: Shop, *, email: str = "", subscriber_id: str = "") -> dict[str, Any] | None:
    """The newsletter subscriber with this email or id, or None when there is none."""
    what = f"the newsletter subscription of {email}" if email else f"subscriber {subscriber_id}"
    path = "/v3/customers/subscribers" if email else f"/v3/customers/subscribers?id:in={subscriber_id}"
    answer = _get(
        shop,
        path,
        what=what,
        missing=f"BigCommerce has no subscribers endpoint at {_base_url(shop)}; check the shop's API URL.",
        params={"email": email} if email else None,
    )
    rows = _v3_rows(answer, what)
    return rows[0] if rows else None


# --- reading -----------------------------------------------------------------------------


def rfc2822(value: Any, field_name: str) -> datetime:
    """The v2 API's dates: ``Tue, 20 Nov 2012 00:00:00 +0000``."""
    raw = text(value)
    if not raw:
        raise PayloadError(f"'{field_name}' is missing.")
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        raise PayloadError(
            f"'{field_name}' is not a date like 'Tue, 20 Nov 2012 00:00:00 +0000': {raw!r}."
        ) from None
    if parsed.tzinfo is None:
        # Only "-0000" gives a naive result; RFC 2822 defines it as UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _numeric_id(value: Any, where: str) -> str:
    # The id goes into an API path: accept digits only.
    resource_id = ident(value)
    if not resource_id.isdigit():
        raise PayloadError(f"The {where} id {value!r} is not a number.")
    return resource_id


def newsletter_consent(subscriber: Mapping[str, Any] | None) -> bool | None:
    """True or False only where BigCommerce says so: a subscriber's ``consents`` list holds
    ``marketing_newsletter`` while they are subscribed and is empty once they opt out. No
    subscriber row, or one without ``consents``, says nothing."""
    if subscriber is None or not isinstance(subscriber.get("consents"), list):
        return None
    return "marketing_newsletter" in subscriber["consents"]


def read_customer(shop: Shop, data: Mapping[str, Any], subscriber: Mapping[str, Any] | None) -> CustomerData:
    """A v3 customer. Every BigCommerce customer has an account (guests are not customers),
    so its creation is its registration. ``accepts_product_review_abandoned_cart_emails``
    is consent to two kinds of BigCommerce's own emails, not to marketing: not read."""
    zone = shop.zone
    return CustomerData(
        external_id=ident(need(data, "id", "customer")),
        email=text(data.get("email")),
        phone=text(data.get("phone")),
        first_name=text(data.get("first_name")),
        last_name=text(data.get("last_name")),
        registered_at=timestamp(data["date_created"], zone, "date_created") if data.get("date_created") else None,
        accepts_email_marketing=newsletter_consent(subscriber),
        updated_at=timestamp(data["date_modified"], zone, "date_modified") if data.get("date_modified") else None,
    )


def _latest_shipment(shipments: list[dict[str, Any]]) -> dict[str, Any]:
    if not shipments:
        return {}
    return max(shipments, key=lambda s: int(s["id"]) if str(s.get("id", "")).isdigit() else 0)


def _address(address: Mapping[str, Any]) -> dict[str, str]:
    keys = ("first_name", "last_name", "company", "street_1", "street_2", "city", "state", "zip", "country")
    found = {k: text(address.get(k)) for k in keys if address.get(k)}
    if address.get("country_iso2"):
        found["country_code"] = text(address["country_iso2"])
    if address.get("phone"):
        found["phone"] = text(address["phone"])
    return found


def read_order(
    shop: Shop, data: Mapping[str, Any], products: list[dict[str, Any]], shipments: list[dict[str, Any]]
) -> OrderData:
    """A v2 order with its products and shipments. Amounts are in the transactional
    currency (``default_currency_code``), not the display one (``currency_code``)."""
    lines = [
        LineData(
            external_id=ident(line.get("id")),
            product_external_id=ident(line.get("product_id")),  # 0 for a custom product
            sku=text(line.get("sku")),
            name=text(line.get("name_customer")) or text(line.get("name")),
            quantity=quantity(line.get("quantity"), "products.quantity"),
            price=money(line.get("price_ex_tax"), "products.price_ex_tax"),
            total=money(line.get("total_ex_tax"), "products.total_ex_tax"),
        )
        for line in products
    ]
    placed_at = rfc2822(need(data, "date_created", "order"), "date_created")
    billing = obj(data, "billing_address", "order")
    shipment = _latest_shipment(shipments)
    raw_status = text(data.get("status")) or STATUS_NAMES.get(data.get("status_id"), "")  # type: ignore[arg-type]
    if not raw_status:
        raise PayloadError("The order has neither 'status' nor a known 'status_id'.")
    return OrderData(
        external_id=_numeric_id(need(data, "id", "order"), "order"),
        number=ident(data["id"]),
        raw_status=raw_status,
        placed_at=placed_at,
        updated_at=rfc2822(data["date_modified"], "date_modified") if data.get("date_modified") else placed_at,
        currency=text(data.get("default_currency_code")) or text(data.get("currency_code")),
        subtotal=money(data.get("subtotal_ex_tax"), "subtotal_ex_tax"),
        shipping_total=money(data.get("shipping_cost_ex_tax"), "shipping_cost_ex_tax"),
        tax_total=money(data.get("total_tax"), "total_tax"),
        discount_total=money(data.get("discount_amount"), "discount_amount")
        + money(data.get("coupon_discount"), "coupon_discount"),
        total=money(data.get("total_inc_tax"), "total_inc_tax"),
        # Billing details as typed at checkout; customer_id 0 is a guest.
        customer=CustomerData(
            external_id=ident(data.get("customer_id")),
            email=text(billing.get("email")),
            phone=text(billing.get("phone")),
            first_name=text(billing.get("first_name")),
            last_name=text(billing.get("last_name")),
            locale=text(data.get("customer_locale")),
        ),
        email=text(billing.get("email")),
        lines=lines,
        shipping_address=_address(obj(shipment, "shipping_address", "shipment")),
        tracking_number=text(shipment.get("tracking_number")),
        carrier=text(shipment.get("shipping_provider_display_name"))
        or text(shipment.get("tracking_carrier"))
        or text(shipment.get("shipping_provider")),
        # A custom link when the merchant gave one, else the one BigCommerce built.
        tracking_url=text(shipment.get("tracking_link")) or text(shipment.get("generated_tracking_link")),
    )


# --- scopes ------------------------------------------------------------------------------


Handler = Callable[[Shop, dict[str, Any]], list[ShopEvent]]


def _resource(body: Mapping[str, Any]) -> dict[str, Any]:
    resource = obj(body, "data")
    if not resource:
        raise PayloadError("The body has no 'data' object naming the resource.")
    return resource


def _order_events(shop: Shop, order_id: str) -> tuple[OrderData | None, list[ShopEvent]]:
    order, products, shipments = fetch_order(shop, order_id)
    if order.get("is_deleted") is True:
        return None, [OrderDeleted(external_id=order_id)]
    data = read_order(shop, order, products, shipments)
    return data, [OrderUpserted(data)]


def _order(shop: Shop, body: dict[str, Any]) -> list[ShopEvent]:
    return _order_events(shop, _numeric_id(need(_resource(body), "id", "webhook's data"), "order"))[1]


def _order_archived(shop: Shop, body: dict[str, Any]) -> list[ShopEvent]:
    order_id = _numeric_id(need(_resource(body), "id", "webhook's data"), "order")
    # The webhook's created_at (epoch seconds) is when the order was archived.
    created = body.get("created_at")
    deleted_at = datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) and created > 0 else None
    return [OrderDeleted(external_id=order_id, deleted_at=deleted_at)]


def _shipment(shop: Shop, body: dict[str, Any]) -> list[ShopEvent]:
    order_id = _numeric_id(need(_resource(body), "orderId", "webhook's data"), "order")
    data, events = _order_events(shop, order_id)
    if data is None:
        return events
    # Editing a shipment's tracking may leave the order's date_modified as it was, and an
    # order at the modification time we hold is not applied again; the patch still is.
    patch = OrderPatched(
        external_id=data.external_id,
        updated_at=data.updated_at,
        tracking_number=data.tracking_number,
        carrier=data.carrier,
        tracking_url=data.tracking_url,
    )
    return [*events, patch]


def _customer(*, registered: bool) -> Handler:
    def handle(shop: Shop, body: dict[str, Any]) -> list[ShopEvent]:
        customer_id = _numeric_id(need(_resource(body), "id", "webhook's data"), "customer")
        customer = fetch_customer(shop, customer_id)
        email = text(customer.get("email"))
        subscriber = fetch_subscriber(shop, email=email) if email else None
        return [CustomerUpserted(read_customer(shop, customer, subscriber), registered=registered)]

    return handle


def _subscriber(shop: Shop, body: dict[str, Any]) -> list[ShopEvent]:
    subscriber_id = _numeric_id(need(_resource(body), "id", "webhook's data"), "subscriber")
    subscriber = fetch_subscriber(shop, subscriber_id=subscriber_id)
    if subscriber is None:
        raise PayloadError(f"Subscriber {subscriber_id} no longer exists at BigCommerce.")
    # No modification time: the subscriber was read just now, so its consent is current.
    return [
        CustomerUpserted(
            CustomerData(
                email=text(subscriber.get("email")),
                first_name=text(subscriber.get("first_name")),
                last_name=text(subscriber.get("last_name")),
                accepts_email_marketing=newsletter_consent(subscriber),
            )
        )
    ]


SCOPES: dict[str, Handler] = {
    "store/order/created": _order,
    "store/order/updated": _order,
    "store/order/statusUpdated": _order,
    "store/order/refund/created": _order,
    "store/order/archived": _order_archived,
    "store/shipment/created": _shipment,
    "store/shipment/updated": _shipment,
    "store/shipment/deleted": _shipment,
    "store/customer/created": _customer(registered=True),
    "store/customer/updated": _customer(registered=False),
    "store/subscriber/created": _subscriber,
    "store/subscriber/updated": _subscriber,
}


def parse(*, shop: Shop, topic: str, body: bytes, state: StateReader) -> list[ShopEvent]:
    data = load_json_object(body)
    handler = SCOPES.get(topic)
    if handler is None:
        raise PayloadError(
            f"BigCommerce scope {topic!r} is not one Herald processes; delete that webhook in BigCommerce "
            f"(DELETE /v3/hooks/<id>) or ask for support."
        )
    return handler(shop, data)
