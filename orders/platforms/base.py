"""What a platform module gives the inbox: admission of a request, and a parse of a
stored delivery into plain dataclasses. The module never touches the database; the
actions in ``orders.actions`` apply what it returns.

A module provides:

- ``PROTOCOL``: the ``<platform>`` part of the webhook URL;
- ``admit(shop, headers, body, now) -> Envelope | None``: authenticate the raw bytes
  and read the topic and dedupe key; ``None`` answers a ping with 200 and stores
  nothing; raises ``WebhookRejected``;
- ``parse(shop, topic, body, state) -> list[ShopEvent]``: raises ``PayloadError``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orders.models import Shop


class WebhookRejected(Exception):
    """The request is not admitted: answered with ``status`` and never trusted into the inbox."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PayloadError(Exception):
    """A stored delivery could not be read. ``retry`` is True when a later attempt may
    succeed (the platform's API was unreachable); otherwise the delivery is failed with
    this reason, kept, and replayed from the admin once the cause is fixed."""

    def __init__(self, reason: str, *, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


@dataclass(frozen=True)
class Envelope:
    topic: str
    dedupe_key: str


@dataclass
class CustomerData:
    external_id: str = ""
    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    locale: str = ""
    timezone: str = ""
    registered_at: datetime | None = None
    accepts_email_marketing: bool | None = None
    accepts_sms_marketing: bool | None = None
    updated_at: datetime | None = None


@dataclass
class LineData:
    name: str
    quantity: Decimal
    price: Decimal
    total: Decimal
    external_id: str = ""
    product_external_id: str = ""
    sku: str = ""
    image_url: str = ""
    url: str = ""


@dataclass
class OrderData:
    external_id: str
    raw_status: str
    placed_at: datetime
    updated_at: datetime
    number: str = ""
    currency: str = ""
    subtotal: Decimal = Decimal("0")
    shipping_total: Decimal = Decimal("0")
    tax_total: Decimal = Decimal("0")
    discount_total: Decimal = Decimal("0")
    total: Decimal = Decimal("0")
    customer: CustomerData | None = None
    email: str = ""
    lines: list[LineData] = field(default_factory=list)
    shipping_address: dict[str, str] = field(default_factory=dict)
    tracking_number: str = ""
    carrier: str = ""
    tracking_url: str = ""
    problems: list[str] = field(default_factory=list)


@dataclass
class OrderUpserted:
    order: OrderData


@dataclass
class OrderPatched:
    """A partial update of an order we know (a fulfilment, a refund)."""

    external_id: str
    updated_at: datetime
    raw_status: str | None = None
    tracking_number: str | None = None
    carrier: str | None = None
    tracking_url: str | None = None


@dataclass
class OrderDeleted:
    external_id: str
    # None: when the delivery was received.
    deleted_at: datetime | None = None


@dataclass
class CustomerUpserted:
    customer: CustomerData
    # True for an explicit "customer registered" event; otherwise registration is
    # inferred from registered_at appearing.
    registered: bool = False


@dataclass
class ProductData:
    external_id: str
    name: str = ""
    sku: str = ""
    url: str = ""
    image_url: str = ""
    price: Decimal | None = None


@dataclass
class ProductViewed:
    customer: CustomerData
    product: ProductData
    viewed_at: datetime


@dataclass
class PrivacyRequested:
    kind: str
    customer_external_id: str = ""
    email: str = ""
    order_ids: list[str] = field(default_factory=list)


ShopEvent = OrderUpserted | OrderPatched | OrderDeleted | CustomerUpserted | ProductViewed | PrivacyRequested


@dataclass(frozen=True)
class OrderSnapshot:
    raw_status: str
    total: Decimal
    source_updated_at: datetime


class StateReader(Protocol):
    """Read-only view of what we already hold, for platforms whose events are partial."""

    def order(self, external_id: str) -> OrderSnapshot | None: ...


class PlatformModule(Protocol):
    PROTOCOL: str

    def admit(self, *, shop: Shop, headers: Mapping[str, str], body: bytes, now: datetime) -> Envelope | None: ...

    def parse(self, *, shop: Shop, topic: str, body: bytes, state: StateReader) -> list[ShopEvent]: ...


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def body_digest(body: bytes) -> str:
    """A dedupe key of last resort, for a delivery whose own ids cannot be read."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def require_header(headers: Mapping[str, str], name: str, *, status: int = 400) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise WebhookRejected(status, f"Missing the {name} header.")
    return value


Fetcher = Callable[[str], object]
