"""Herald's own signed webhook protocol.

Spoken by the Herald module for Magento 2 (URL protocol ``magento``) and by custom
back-ends and the bridges for 3dcart and Volusion (``generic``); both URL protocols
land here. The protocol for integrators is in docs/WEBHOOKS.md and the body's shape in
docs/schemas/herald-event.schema.json, which ``parse`` validates against.

Authenticity: ``Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw
body>">`` keyed with the shop's webhook secret. Several ``v1`` entries may be sent while
a secret is rotated; one match is enough. A ``t`` more than five minutes from our clock
is refused, so a captured request cannot be replayed later.

The raw ``status`` is the shop's own (a Magento status code, a 3dcart or Volusion status
name, or for a custom back-end a canonical name); the shop's platform chooses the map.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from orders.models import Shop, WebhookDelivery
from orders.platforms.base import (
    CustomerData,
    CustomerUpserted,
    Envelope,
    LineData,
    OrderData,
    OrderUpserted,
    PayloadError,
    ProductData,
    ProductViewed,
    ShopEvent,
    StateReader,
    WebhookRejected,
    body_digest,
    hmac_sha256,
)
from orders.platforms.reading import flag, ident, load_json_object, money, quantity, text, timestamp

PROTOCOL = "generic"
SIGNATURE_HEADER = "Herald-Signature"
# How far the signed time may be from our clock, either way.
TOLERANCE_SECONDS = 300

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "herald-event.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_KEY_LENGTH = WebhookDelivery._meta.get_field("dedupe_key").max_length or 300
_MALFORMED = f"{SIGNATURE_HEADER} is malformed; expected t=<unix seconds>,v1=<hex HMAC-SHA256>."


# --- admission -----------------------------------------------------------------------


def _read_signature(header: str) -> tuple[int, list[str]]:
    """The signed time and the candidate digests. Unknown schemes (a future v2) are
    skipped so a sender can add one before we read it."""
    signed_at: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookRejected(401, _MALFORMED)
        if key == "t":
            if signed_at is not None or not _UNIX_SECONDS.fullmatch(value):
                raise WebhookRejected(401, _MALFORMED)
            signed_at = int(value)
        elif key == "v1":
            if not _HEX_DIGEST.fullmatch(value):
                raise WebhookRejected(401, _MALFORMED)
            digests.append(value.lower())
    if signed_at is None or not digests:
        raise WebhookRejected(401, _MALFORMED)
    return signed_at, digests


def verify_signature(*, secret: str, header: str, body: bytes, now: datetime) -> None:
    """Raise ``WebhookRejected(401)`` unless ``header`` signs ``body`` with ``secret``
    at a time within ``TOLERANCE_SECONDS`` of ``now``."""
    signed_at, digests = _read_signature(header)
    expected = hmac_sha256(secret, f"{signed_at}.".encode() + body).hex().encode()
    # Compare every candidate, so the time taken does not tell which one came close.
    matches = [hmac.compare_digest(expected, digest.encode()) for digest in digests]
    if not any(matches):
        raise WebhookRejected(401, f"{SIGNATURE_HEADER} does not match the body signed with this shop's secret.")
    drift = int(now.timestamp()) - signed_at
    if drift > TOLERANCE_SECONDS:
        raise WebhookRejected(
            401,
            f"{SIGNATURE_HEADER} was signed {drift} seconds ago; at most {TOLERANCE_SECONDS} are accepted. "
            "Sign each attempt when it is sent, and check the sender's clock.",
        )
    if -drift > TOLERANCE_SECONDS:
        raise WebhookRejected(
            401,
            f"{SIGNATURE_HEADER} is signed {-drift} seconds in the future; at most {TOLERANCE_SECONDS} are "
            "accepted. Check the sender's clock.",
        )


def _event_key(body: bytes) -> tuple[str, str | None]:
    """The topic and the event id, as far as the body can be read."""
    try:
        data = load_json_object(body)
    except PayloadError:
        return "unknown", None
    event_type, event_id = data.get("type"), data.get("id")
    topic = event_type.strip() if isinstance(event_type, str) and event_type.strip() else "unknown"
    if topic == "unknown" or not isinstance(event_id, (str, int)) or isinstance(event_id, bool):
        return topic, None
    return topic, ident(event_id) or None


def admit(*, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope:
    header = headers.get(SIGNATURE_HEADER, "").strip()
    if not header:
        raise WebhookRejected(401, f"Missing the {SIGNATURE_HEADER} header.")
    if not shop.webhook_secret:
        # An empty key would make every signature computable by anyone.
        raise WebhookRejected(401, "This shop has no webhook secret; set one in Herald and in the sender.")
    verify_signature(secret=shop.webhook_secret, header=header, body=body, now=now)
    # A signed body we cannot read is still ours: stored, then failed with its reason.
    topic, event_id = _event_key(body)
    key = f"{topic}:{event_id}"
    # An over-long id would be cut by the column and collide; the schema fails it later anyway.
    if not event_id or len(key) > _KEY_LENGTH:
        key = body_digest(body)
    return Envelope(topic=topic, dedupe_key=key)


# --- validation ----------------------------------------------------------------------

_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true/false",
    "null": "null",
}


def _where(path: Iterable[str | int]) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where or "the event"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _words(values: list[Any]) -> str:
    names = [_JSON_TYPES.get(v, str(v)) for v in values]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def describe(error: ValidationError) -> str:
    """A validation error in plain words, naming the field by its JSON path."""
    where, value, rule, schema = _where(error.absolute_path), error.instance, error.validator_value, error.schema
    what = f"{where} ({schema['description']})" if "description" in schema else where
    if error.validator == "required":
        missing = next(name for name in rule if name not in value)
        return f"{where}.{missing} is missing." if error.absolute_path else f"the event has no '{missing}'."
    if error.validator == "anyOf" and all(set(branch) == {"required"} for branch in rule):
        return f"{where} needs at least one of: {', '.join(branch['required'][0] for branch in rule)}."
    if error.validator == "type":
        expected = _words(rule if isinstance(rule, list) else [rule])
        return f"{where} should be {expected}, not {_JSON_TYPES.get(_json_type(value), _json_type(value))}."
    if error.validator in ("enum", "const"):
        allowed = rule if error.validator == "enum" else [rule]
        return f"{where} is {_shown(value)}; expected one of: {', '.join(map(str, allowed))}."
    if error.validator == "pattern":
        return f"{where} is {_shown(value)}, which is not {schema.get('description', 'in the expected format')}."
    if error.validator == "minLength":
        return f"{where} is empty." if rule == 1 else f"{where} is shorter than {rule} characters."
    if error.validator == "maxLength":
        return f"{where} is longer than {rule} characters."
    if error.validator in ("minimum", "maximum"):
        bound = "smallest" if error.validator == "minimum" else "largest"
        return f"{what} is {value}, beyond the {bound} allowed ({rule})."
    if error.validator == "maxItems":
        return f"{where} has more than {rule} items."
    return f"{where}: {error.message}"


def validate(data: dict[str, Any]) -> None:
    """Raise ``PayloadError`` naming the first problem: the shallowest error, and among
    equally deep ones the first in the schema's order, so the answer is stable."""
    errors = list(VALIDATOR.iter_errors(data))
    if errors:
        first = min(errors, key=lambda e: len(e.absolute_path))
        raise PayloadError(f"The event does not follow Herald's webhook schema: {describe(first)}")


# --- reading -------------------------------------------------------------------------


def _when(value: Any, shop: Shop, field_name: str, problems: list[str] | None = None) -> datetime:
    try:
        return timestamp(value, shop.zone, field_name, problems)
    except ValueError:
        # The schema lets "2026-02-30T10:00:00" through; the calendar does not.
        raise PayloadError(f"'{field_name}' is not a real date and time: {value!r}.") from None


def _maybe_when(value: Any, shop: Shop, field_name: str) -> datetime | None:
    return None if value in (None, "") else _when(value, shop, field_name)


def read_customer(shop: Shop, data: Mapping[str, Any], where: str) -> CustomerData:
    return CustomerData(
        external_id=ident(data.get("id")),
        email=text(data.get("email")),
        phone=text(data.get("phone")),
        first_name=text(data.get("first_name")),
        last_name=text(data.get("last_name")),
        locale=text(data.get("locale")),
        timezone=text(data.get("timezone")),
        registered_at=_maybe_when(data.get("registered_at"), shop, f"{where}.registered_at"),
        accepts_email_marketing=flag(data.get("accepts_email_marketing")),
        accepts_sms_marketing=flag(data.get("accepts_sms_marketing")),
        updated_at=_maybe_when(data.get("updated_at"), shop, f"{where}.updated_at"),
    )


def _line(line: Mapping[str, Any], where: str) -> LineData:
    count = quantity(line.get("quantity"), f"{where}.quantity")
    price = money(line.get("price"), f"{where}.price")
    total = line.get("total")
    return LineData(
        external_id=ident(line.get("id")),
        product_external_id=ident(line.get("product_id")),
        sku=text(line.get("sku")),
        name=text(line.get("name")),
        quantity=count,
        price=price,
        total=money(total, f"{where}.total") if total not in (None, "") else (price * count).quantize(Decimal("0.01")),
        image_url=text(line.get("image_url")),
        url=text(line.get("url")),
    )


_ADDRESS_KEYS = ("name", "company", "address1", "address2", "city", "province", "zip", "country", "country_code", "phone")


def read_order(shop: Shop, data: Mapping[str, Any]) -> OrderData:
    where = "data.order"
    problems: list[str] = []
    customer = data.get("customer") or {}
    tracking = data.get("tracking") or {}
    address = data.get("shipping_address") or {}
    return OrderData(
        external_id=ident(data["id"]),
        number=text(data.get("number")),
        raw_status=text(data["status"]),
        placed_at=_when(data["placed_at"], shop, f"{where}.placed_at", problems),
        updated_at=_when(data["updated_at"], shop, f"{where}.updated_at", problems),
        currency=text(data["currency"]).upper(),
        subtotal=money(data.get("subtotal"), f"{where}.subtotal"),
        shipping_total=money(data.get("shipping_total"), f"{where}.shipping_total"),
        tax_total=money(data.get("tax_total"), f"{where}.tax_total"),
        discount_total=money(data.get("discount_total"), f"{where}.discount_total"),
        total=money(data["total"], f"{where}.total"),
        customer=read_customer(shop, customer, f"{where}.customer") if customer else None,
        email=text(data.get("email")) or text(customer.get("email")),
        lines=[_line(line, f"{where}.lines[{i}]") for i, line in enumerate(data.get("lines") or [])],
        shipping_address={key: text(address.get(key)) for key in _ADDRESS_KEYS if text(address.get(key))},
        tracking_number=text(tracking.get("number")),
        carrier=text(tracking.get("carrier")),
        tracking_url=text(tracking.get("url")),
        problems=problems,
    )


# --- event types ---------------------------------------------------------------------


def _order(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    order = read_order(shop, data["order"])
    if order.customer is not None and not order.customer.email and not order.customer.phone:
        order.customer.email = order.email
    return [OrderUpserted(order)]


def _customer(*, registered: bool) -> Callable[[Shop, dict[str, Any]], list[ShopEvent]]:
    def parse(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
        return [CustomerUpserted(read_customer(shop, data["customer"], "data.customer"), registered=registered)]

    return parse


def _product_viewed(shop: Shop, data: dict[str, Any]) -> list[ShopEvent]:
    product = data["product"]
    price = product.get("price")
    return [
        ProductViewed(
            customer=read_customer(shop, data["customer"], "data.customer"),
            product=ProductData(
                external_id=ident(product["id"]),
                name=text(product.get("name")),
                sku=text(product.get("sku")),
                url=text(product.get("url")),
                image_url=text(product.get("image_url")),
                price=money(price, "data.product.price") if price not in (None, "") else None,
            ),
            viewed_at=_when(data["viewed_at"], shop, "data.viewed_at"),
        )
    ]


TYPES: dict[str, Callable[[Shop, dict[str, Any]], list[ShopEvent]]] = {
    "order.created": _order,
    "order.updated": _order,
    "order.status_changed": _order,
    "customer.created": _customer(registered=False),
    "customer.updated": _customer(registered=False),
    "customer.registered": _customer(registered=True),
    "product.viewed": _product_viewed,
}


def parse(*, shop: Shop, topic: str, body: bytes, state: StateReader) -> list[ShopEvent]:
    """Read a stored event. The body's own ``type`` decides (the topic was read from the
    same bytes). Raises ``PayloadError`` for an unreadable body or one off the schema."""
    event = load_json_object(body)
    validate(event)
    return TYPES[event["type"]](shop, event["data"])
