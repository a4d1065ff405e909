"""Applying parsed shop events to the mirror. Called by ``orders.actions.process_delivery``
inside its transaction; each function locks the rows it changes, so two workers
processing two deliveries about the same order or customer serialise on the row.

Ordering: the shop's own modification time decides. An update older than what we hold
goes into the status history only and sends no signal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.db import IntegrityError, transaction
from django.db.models import Model

from orders import signals
from orders.contacts import is_known_currency, normalise_email, normalise_phone, normalise_timezone
from orders.models import (
    Customer,
    CustomerIdentity,
    Order,
    OrderLine,
    OrderStatusChange,
    PrivacyRequest,
    Product,
    ProductView,
    Shop,
    StatusMapping,
    WebhookDelivery,
)
from orders.platforms.base import (
    CustomerData,
    CustomerUpserted,
    OrderData,
    OrderDeleted,
    OrderPatched,
    OrderSnapshot,
    OrderUpserted,
    PrivacyRequested,
    ProductData,
    ProductViewed,
    ShopEvent,
)
from orders.statuses import OrderStatus, default_status_maps


@dataclass
class Context:
    shop: Shop
    delivery: WebhookDelivery
    now: datetime


class DatabaseState:
    """The platform modules' read-only view of what we hold."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def order(self, external_id: str) -> OrderSnapshot | None:
        row = (
            Order.objects.filter(shop=self.shop, external_id=external_id)
            .values("raw_status", "total", "source_updated_at")
            .first()
        )
        return OrderSnapshot(**row) if row else None


def _create_or_lock(model: type[Model], lookup: dict[str, object], defaults: dict[str, object]) -> tuple[Model, bool]:
    """Lock the row matching ``lookup``, creating it if absent. Two transactions racing to
    create the same row meet at its unique constraint; the loser locks the winner's row."""
    row = model._default_manager.select_for_update().filter(**lookup).first()
    if row is not None:
        return row, False
    try:
        with transaction.atomic():
            return model._default_manager.create(**lookup, **defaults), True
    except IntegrityError:
        return model._default_manager.select_for_update().get(**lookup), False


def map_status(platform: str, raw_status: str, now: datetime) -> str:
    """The canonical status for a raw one. An unmapped raw status becomes ``unknown`` and
    gets a mapping row of its own, for staff to fill in."""
    if not raw_status:
        return OrderStatus.UNKNOWN
    mapping = StatusMapping.objects.filter(platform=platform, raw_status=raw_status).first()
    if mapping is None:
        # The migration loads the defaults; a row missing here (deleted by staff, or a
        # default added in a later release) falls back to the code's default.
        default = _default_maps().get(platform, {}).get(raw_status)
        mapping, _ = StatusMapping.objects.get_or_create(
            platform=platform,
            raw_status=raw_status,
            defaults={"status": default or OrderStatus.UNKNOWN, "first_seen_at": None if default else now},
        )
    return mapping.status


@lru_cache(maxsize=1)
def _default_maps() -> dict[str, dict[str, str]]:
    return default_status_maps()


# --- customers -------------------------------------------------------------------------


def _find_customer(shop: Shop, data: CustomerData, email: str, phone: str) -> Customer | None:
    if data.external_id:
        identity = CustomerIdentity.objects.filter(shop=shop, external_id=data.external_id).first()
        if identity is not None:
            return Customer.objects.select_for_update().get(pk=identity.customer_id)
    if email:
        return Customer.objects.select_for_update().filter(email=email).first()
    if phone:
        return Customer.objects.select_for_update().filter(email="", phone=phone).first()
    return None


def resolve_customer(ctx: Context, data: CustomerData, *, registered: bool = False) -> Customer | None:
    """Find or create the brand-wide customer for a shop's view of them and apply the
    newer fields. Returns None when the data names nobody (no id, email or phone)."""
    email = normalise_email(data.email)
    phone = normalise_phone(data.phone, ctx.shop.country)
    zone = normalise_timezone(data.timezone)
    if not (data.external_id or email.raw or phone.raw):
        return None
    customer = _find_customer(ctx.shop, data, email.value, phone.value)
    created = False
    if customer is None:
        lookup: dict[str, object]
        if email.value:
            lookup = {"email": email.value}
        elif phone.value:
            lookup = {"email": "", "phone": phone.value}
        else:
            lookup = {}
        if lookup:
            found, created = _create_or_lock(Customer, lookup, {})
            customer = found  # type: ignore[assignment]
        else:
            customer = Customer.objects.create()
            created = True
    assert customer is not None
    if data.external_id:
        try:
            with transaction.atomic():
                CustomerIdentity.objects.get_or_create(
                    shop=ctx.shop, external_id=data.external_id, defaults={"customer": customer}
                )
        except IntegrityError:
            pass  # another worker linked it first; the identity exists either way

    was_registered = customer.registered_at is not None
    consent_before = (customer.accepts_email_marketing, customer.accepts_sms_marketing)
    newer = customer.source_updated_at is None or data.updated_at is None or data.updated_at >= customer.source_updated_at
    if created or newer:
        _apply_customer_fields(customer, data, email, phone, zone)
    if registered and customer.registered_at is None:
        customer.registered_at = data.registered_at or data.updated_at or ctx.now
    customer.save()

    occurred = data.updated_at or ctx.now
    base = f"delivery:{ctx.delivery.pk}:customer:{customer.pk}"
    if created:
        signals.customer_created.send(
            Customer, customer=customer, shop=ctx.shop, event_id=f"{base}:created", occurred_at=occurred
        )
    if customer.registered_at is not None and not was_registered:
        signals.customer_registered.send(
            Customer,
            customer=customer,
            shop=ctx.shop,
            event_id=f"customer:{customer.pk}:registered",
            occurred_at=customer.registered_at,
        )
    consent_after = (customer.accepts_email_marketing, customer.accepts_sms_marketing)
    if created or consent_after != consent_before or newer:
        signals.customer_updated.send(
            Customer,
            customer=customer,
            shop=ctx.shop,
            consent={"email": customer.accepts_email_marketing, "sms": customer.accepts_sms_marketing},
            event_id=f"{base}:updated",
            occurred_at=occurred,
        )
    return customer


def _apply_customer_fields(customer: Customer, data: CustomerData, email, phone, zone) -> None:  # type: ignore[no-untyped-def]
    # A partial view (a guest order carries only an email) never blanks what we know.
    if email.raw and (email.valid or not customer.email):
        taken = (
            email.valid
            and email.value != customer.email
            and Customer.objects.filter(email=email.value).exclude(pk=customer.pk).exists()
        )
        # Another customer already owns that address (an account email differing from a
        # billing email): keep ours rather than merge two people on a guess.
        if not taken:
            customer.email_raw, customer.email_valid = email.raw, email.valid
            if email.valid:
                customer.email = email.value
    if phone.raw:
        customer.phone_raw, customer.phone_valid, customer.phone = phone.raw, phone.valid, phone.value
    if zone.raw:
        customer.timezone_raw, customer.timezone = zone.raw, zone.value
    for name in ("first_name", "last_name", "locale"):
        value = getattr(data, name)
        if value:
            setattr(customer, name, value[:150])
    if data.registered_at and customer.registered_at is None:
        customer.registered_at = data.registered_at
    if data.accepts_email_marketing is not None:
        customer.accepts_email_marketing = data.accepts_email_marketing
    if data.accepts_sms_marketing is not None:
        customer.accepts_sms_marketing = data.accepts_sms_marketing
    if data.updated_at is not None:
        customer.source_updated_at = data.updated_at


# --- orders ------------------------------------------------------------------------------


def _upsert_product(shop: Shop, data: ProductData) -> Product:
    product, _ = Product.objects.update_or_create(
        shop=shop,
        external_id=data.external_id,
        defaults={
            k: v
            for k, v in {
                "name": data.name[:500],
                "sku": data.sku[:100],
                "url": data.url,
                "image_url": data.image_url,
                "price": data.price,
            }.items()
            if v not in ("", None)
        },
    )
    return product


def _replace_lines(ctx: Context, order: Order, data: OrderData) -> None:
    order.lines.all().delete()
    lines = []
    for position, line in enumerate(data.lines):
        product = None
        if line.product_external_id:
            product = _upsert_product(
                ctx.shop,
                ProductData(
                    external_id=line.product_external_id,
                    name=line.name,
                    sku=line.sku,
                    url=line.url,
                    image_url=line.image_url,
                    price=line.price,
                ),
            )
        lines.append(
            OrderLine(
                order=order,
                position=position,
                external_id=line.external_id[:100],
                product=product,
                sku=line.sku[:100],
                name=line.name[:500] or line.sku or "(unnamed item)",
                quantity=line.quantity,
                price=line.price,
                total=line.total,
                image_url=line.image_url,
                url=line.url,
            )
        )
    OrderLine.objects.bulk_create(lines)


def _order_fields(ctx: Context, data: OrderData) -> dict[str, object]:
    problems = list(data.problems)
    placed_at = data.placed_at
    if placed_at > ctx.now:
        problems.append(f"placed_at {placed_at.isoformat()} is in the future; used the time received instead.")
        placed_at = ctx.now
    currency = (data.currency or ctx.shop.currency).upper()[:8]
    if not is_known_currency(currency):
        problems.append(f"Unknown currency {currency!r}; amounts kept as sent.")
    return {
        "number": data.number[:100],
        "email": data.email[:320],
        "currency": currency,
        "subtotal": data.subtotal,
        "shipping_total": data.shipping_total,
        "tax_total": data.tax_total,
        "discount_total": data.discount_total,
        "total": data.total,
        "placed_at": placed_at,
        "source_updated_at": data.updated_at,
        "shipping_address": data.shipping_address,
        "tracking_number": data.tracking_number[:200],
        "carrier": data.carrier[:200],
        "tracking_url": data.tracking_url[:1000],
        "problems": problems,
        # A newer full state of the order means it exists again (restored from trash).
        "deleted_at": None,
    }


def _record_status(
    ctx: Context, order: Order, *, old: str | None, old_raw: str, new: str, new_raw: str, at: datetime, applied: bool
) -> OrderStatusChange:
    return OrderStatusChange.objects.create(
        order=order,
        old_status=old or "",
        new_status=new,
        old_raw_status=old_raw,
        new_raw_status=new_raw,
        changed_at=at,
        applied=applied,
        delivery=ctx.delivery,
    )


def _send_status_changed(order: Order, old: str | None, change: OrderStatusChange) -> None:
    signals.order_status_changed.send(
        Order,
        order=order,
        old=old,
        new=order.status,
        change=change,
        event_id=f"status-change:{change.pk}",
        occurred_at=change.changed_at,
    )


def apply_order(ctx: Context, event: OrderUpserted) -> str:
    data = event.order
    customer = None
    if data.customer is not None:
        customer = resolve_customer(ctx, data.customer)
    if customer is None and data.email:
        customer = resolve_customer(ctx, CustomerData(email=data.email, updated_at=None))
    status = map_status(ctx.shop.platform, data.raw_status, ctx.now)
    fields = _order_fields(ctx, data)
    row, created = _create_or_lock(
        Order,
        {"shop": ctx.shop, "external_id": data.external_id},
        {**fields, "customer": customer, "status": status, "raw_status": data.raw_status[:200]},
    )
    order: Order = row  # type: ignore[assignment]
    if created:
        _replace_lines(ctx, order, data)
        change = _record_status(
            ctx, order, old=None, old_raw="", new=status, new_raw=data.raw_status, at=order.placed_at, applied=True
        )
        signals.order_created.send(Order, order=order, event_id=f"order:{order.pk}:created", occurred_at=order.placed_at)
        _send_status_changed(order, None, change)
        return f"order {order.number or order.external_id} created ({status})"

    if data.updated_at < order.source_updated_at:
        if data.raw_status != order.raw_status:
            _record_status(
                ctx,
                order,
                old=None,
                old_raw="",
                new=status,
                new_raw=data.raw_status,
                at=data.updated_at,
                applied=False,
            )
        return f"order {order.number or order.external_id}: older than what we hold; history only"
    if data.updated_at == order.source_updated_at and data.raw_status == order.raw_status:
        return f"order {order.number or order.external_id}: already up to date"

    old_status, old_raw = order.status, order.raw_status
    for name, value in fields.items():
        setattr(order, name, value)
    if customer is not None:
        order.customer = customer
    order.status, order.raw_status = status, data.raw_status[:200]
    order.save()
    _replace_lines(ctx, order, data)
    return _after_update(ctx, order, old_status, old_raw, data.updated_at)


def _after_update(ctx: Context, order: Order, old_status: str, old_raw: str, at: datetime) -> str:
    label = order.number or order.external_id
    if order.raw_status == old_raw and order.status == old_status:
        return f"order {label} updated"
    change = _record_status(
        ctx, order, old=old_status, old_raw=old_raw, new=order.status, new_raw=order.raw_status, at=at, applied=True
    )
    if order.status != old_status:
        _send_status_changed(order, old_status, change)
        return f"order {label} updated: {old_status} -> {order.status}"
    return f"order {label} updated (raw status {old_raw} -> {order.raw_status})"


def apply_order_patch(ctx: Context, event: OrderPatched) -> str:
    from orders.platforms.base import PayloadError

    order = Order.objects.select_for_update().filter(shop=ctx.shop, external_id=event.external_id).first()
    if order is None:
        # The order's own webhook is usually a moment behind; try again later.
        raise PayloadError(f"Order {event.external_id} is not known yet.", retry=True)
    if event.updated_at < order.source_updated_at:
        if event.raw_status and event.raw_status != order.raw_status:
            status = map_status(ctx.shop.platform, event.raw_status, ctx.now)
            _record_status(
                ctx, order, old=None, old_raw="", new=status, new_raw=event.raw_status, at=event.updated_at, applied=False
            )
        return f"order {order.number or order.external_id}: patch older than what we hold; history only"
    old_status, old_raw = order.status, order.raw_status
    for name in ("tracking_number", "carrier", "tracking_url"):
        value = getattr(event, name)
        if value is not None:
            setattr(order, name, value)
    if event.raw_status:
        order.raw_status = event.raw_status[:200]
        order.status = map_status(ctx.shop.platform, event.raw_status, ctx.now)
    order.source_updated_at = event.updated_at
    order.save()
    return _after_update(ctx, order, old_status, old_raw, event.updated_at)


def apply_order_deleted(ctx: Context, event: OrderDeleted) -> str:
    updated = Order.objects.filter(shop=ctx.shop, external_id=event.external_id, deleted_at__isnull=True).update(
        deleted_at=event.deleted_at or ctx.delivery.received_at
    )
    return f"order {event.external_id} marked deleted" if updated else f"order {event.external_id}: nothing to delete"


def apply_customer(ctx: Context, event: CustomerUpserted) -> str:
    customer = resolve_customer(ctx, event.customer, registered=event.registered)
    if customer is None:
        return "customer event names nobody (no id, email or phone); nothing to do"
    return f"customer {customer.pk} upserted"


def apply_product_view(ctx: Context, event: ProductViewed) -> str:
    customer = resolve_customer(ctx, event.customer)
    if customer is None:
        return "product view by an unknown visitor; nothing to do"
    product = _upsert_product(ctx.shop, event.product)
    view, created = ProductView.objects.get_or_create(
        customer=customer, product=product, viewed_at=event.viewed_at, defaults={"delivery": ctx.delivery}
    )
    if created:
        signals.product_viewed.send(
            ProductView, view=view, event_id=f"product-view:{view.pk}", occurred_at=view.viewed_at
        )
    return f"product view of {product.name or product.external_id} recorded"


def apply_privacy_request(ctx: Context, event: PrivacyRequested) -> str:
    customer = None
    if event.customer_external_id:
        identity = CustomerIdentity.objects.filter(shop=ctx.shop, external_id=event.customer_external_id).first()
        customer = identity.customer if identity else None
    if customer is None and event.email:
        customer = Customer.objects.filter(email=normalise_email(event.email).value or "-").first()
    PrivacyRequest.objects.get_or_create(
        delivery=ctx.delivery,
        defaults={
            "shop": ctx.shop,
            "kind": event.kind,
            "customer": customer,
            "customer_external_id": event.customer_external_id,
            "email": event.email,
            "order_ids": event.order_ids,
            "received_at": ctx.delivery.received_at,
        },
    )
    return f"privacy request {event.kind} recorded for staff"


APPLIERS: dict[type, Callable[[Context, ShopEvent], str]] = {  # type: ignore[dict-item]
    OrderUpserted: apply_order,
    OrderPatched: apply_order_patch,
    OrderDeleted: apply_order_deleted,
    CustomerUpserted: apply_customer,
    ProductViewed: apply_product_view,
    PrivacyRequested: apply_privacy_request,
}


def apply_events(ctx: Context, events: list[ShopEvent]) -> str:
    if not events:
        return "nothing to apply"
    return "; ".join(APPLIERS[type(event)](ctx, event) for event in events)
