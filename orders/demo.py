"""Demo data for the orders room: a shop per platform, customers and their orders.

Idempotent: running it again changes nothing. The Shopify shop's orders go through the
real inbox and parser, so the demo inbox shows what a webhook leaves behind.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TextIO

from django.utils import timezone

from orders.actions import process_delivery, receive_delivery
from orders.models import Customer, CustomerIdentity, Order, OrderLine, OrderStatusChange, Platform, Product, Shop
from orders.platforms.base import Envelope
from orders.statuses import OrderStatus

SHOPS = [
    ("Acme Outfitters", "acme", Platform.SHOPIFY, "USD", "America/New_York", "US"),
    ("Bolt Coffee", "bolt-coffee", Platform.WOOCOMMERCE, "EUR", "Europe/Berlin", "DE"),
    ("Cobalt Gear", "cobalt-gear", Platform.BIGCOMMERCE, "USD", "America/Chicago", "US"),
    ("Delta Home", "delta-home", Platform.MAGENTO, "GBP", "Europe/London", "GB"),
    ("Echo Tools", "echo-tools", Platform.THREEDCART, "USD", "America/Denver", "US"),
    ("Fjord Knits", "fjord-knits", Platform.VOLUSION, "NOK", "Europe/Oslo", "NO"),
    ("Garnet Labs", "garnet-labs", Platform.CUSTOM, "AUD", "Australia/Sydney", "AU"),
]

PEOPLE = [
    ("Jon", "Snow", "jon@example.com", "+12025550143", "America/New_York", True),
    ("Ada", "Lovelace", "ada@example.com", "+447700900123", "Europe/London", True),
    ("Grace", "Hopper", "grace@example.com", "+12025550178", "America/Chicago", False),
    ("Linus", "Berg", "linus@example.com", "+4791234567", "Europe/Oslo", None),
    ("Mei", "Tanaka", "mei@example.com", "+61412345678", "Australia/Sydney", True),
    ("Omar", "Haddad", "omar@example.com", "+4915123456789", "Europe/Berlin", False),
]

PRODUCTS = [
    ("TEE-001", "Organic cotton tee", Decimal("24.00")),
    ("MUG-002", "Enamel camp mug", Decimal("18.50")),
    ("BAG-003", "Waxed canvas tote", Decimal("64.00")),
    ("SOCK-004", "Merino hiking socks", Decimal("16.00")),
    ("CAP-005", "Five-panel cap", Decimal("29.00")),
]


def _shopify_order(number: int, person: tuple, placed: datetime, status: tuple[str, str | None]) -> dict:  # type: ignore[type-arg]
    first, last, email, phone, _, consent = person
    sku, name, price = PRODUCTS[number % len(PRODUCTS)]
    financial, fulfillment = status
    return {
        "id": 5000000 + number,
        "name": f"#{1000 + number}",
        "email": email,
        "created_at": placed.isoformat(),
        "processed_at": placed.isoformat(),
        "updated_at": (placed + timedelta(hours=2)).isoformat(),
        "financial_status": financial,
        "fulfillment_status": fulfillment,
        "currency": "USD",
        "subtotal_price": str(price * 2),
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "total_price": str(price * 2 + Decimal("5.00")),
        "total_shipping_price_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"}},
        "customer": {
            "id": 7000 + PEOPLE.index(person),
            "email": email,
            "first_name": first,
            "last_name": last,
            "phone": phone,
            "state": "enabled",
            "created_at": (placed - timedelta(days=30)).isoformat(),
            "updated_at": placed.isoformat(),
            "email_marketing_consent": {"state": {True: "subscribed", False: "unsubscribed", None: "not_subscribed"}[consent]},
        },
        "line_items": [
            {"id": 9000 + number, "product_id": 300 + PRODUCTS.index((sku, name, price)), "sku": sku, "name": name,
             "quantity": 2, "price": str(price)}
        ],
        "shipping_address": {"name": f"{first} {last}", "address1": "1 Demo Street", "city": "Springfield", "country_code": "US"},
        "fulfillments": [],
    }


def _seed_shopify(shop: Shop, now: datetime) -> int:
    statuses = [("paid", None), ("paid", "fulfilled"), ("pending", None), ("refunded", "fulfilled"), ("authorized", None)]
    count = 0
    for number in range(1, 9):
        person = PEOPLE[number % len(PEOPLE)]
        payload = _shopify_order(number, person, now - timedelta(days=number * 3), statuses[number % len(statuses)])
        body = json.dumps(payload).encode()
        delivery_id, created = receive_delivery(
            shop=shop,
            envelope=Envelope(topic="orders/create", dedupe_key=f"demo:orders/create:{payload['id']}"),
            headers={"X-Shopify-Topic": "orders/create", "X-Herald-Source": "demo"},
            body=body,
            now=now,
            source="demo",
            enqueue=False,
        )
        if created:
            process_delivery(delivery_id=delivery_id, now=now)
            count += 1
    return count


_OTHER_STATUSES = {
    Platform.WOOCOMMERCE: ["processing", "completed", "on-hold"],
    Platform.BIGCOMMERCE: ["Awaiting Fulfillment", "Shipped", "Completed"],
    Platform.MAGENTO: ["processing", "complete", "pending"],
    Platform.THREEDCART: ["New", "Shipped", "Hold"],
    Platform.VOLUSION: ["Processing", "Shipped", "Backordered"],
    Platform.CUSTOM: ["paid", "out_for_delivery", "delivered"],
}


def _seed_direct(shop: Shop, now: datetime) -> int:
    """Platforms whose demo orders are written directly (their real path needs the shop's API)."""
    from orders.models import StatusMapping

    count = 0
    for index, raw in enumerate(_OTHER_STATUSES[shop.platform]):
        person = PEOPLE[(index + len(shop.slug)) % len(PEOPLE)]
        customer = Customer.objects.get(email=person[2])
        CustomerIdentity.objects.get_or_create(shop=shop, external_id=f"c-{customer.pk}", defaults={"customer": customer})
        placed = now - timedelta(days=index * 4 + 1)
        mapping = StatusMapping.objects.filter(platform=shop.platform, raw_status=raw).first()
        status = mapping.status if mapping else OrderStatus.UNKNOWN
        sku, name, price = PRODUCTS[index]
        product, _ = Product.objects.get_or_create(
            shop=shop, external_id=f"p-{sku}", defaults={"sku": sku, "name": name, "price": price}
        )
        order, created = Order.objects.get_or_create(
            shop=shop,
            external_id=f"{shop.slug}-{100 + index}",
            defaults={
                "number": str(100 + index),
                "customer": customer,
                "email": customer.email,
                "status": status,
                "raw_status": raw,
                "currency": shop.currency,
                "subtotal": price,
                "total": price,
                "placed_at": placed,
                "source_updated_at": placed,
            },
        )
        if created:
            OrderLine.objects.create(order=order, product=product, sku=sku, name=name, quantity=1, price=price, total=price)
            OrderStatusChange.objects.create(order=order, new_status=status, new_raw_status=raw, changed_at=placed)
            count += 1
    return count


def seed(out: TextIO, now: datetime | None = None) -> None:
    now = now or timezone.now()
    shops = []
    for name, slug, platform, currency, zone, country in SHOPS:
        shop, _ = Shop.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "platform": platform,
                "currency": currency,
                "timezone": zone,
                "country": country,
                "url": f"https://{slug}.example.com",
                "support_email": f"help@{slug}.example.com",
                "postal_address": "1 Demo Street, Springfield",
            },
        )
        shops.append(shop)
    for first, last, email, phone, zone, consent in PEOPLE:
        Customer.objects.get_or_create(
            email=email,
            defaults={
                "email_raw": email,
                "email_valid": True,
                "phone": phone,
                "phone_raw": phone,
                "phone_valid": True,
                "first_name": first,
                "last_name": last,
                "timezone": zone,
                "timezone_raw": zone,
                "registered_at": now - timedelta(days=60),
                "accepts_email_marketing": consent,
                "accepts_sms_marketing": consent,
            },
        )
    created = _seed_shopify(shops[0], now)
    for shop in shops[1:]:
        created += _seed_direct(shop, now)
    out.write(f"orders: {len(shops)} shops, {Customer.objects.count()} customers, {created} new orders\n")
    for shop in shops:
        out.write(f"  {shop.slug:<12} {shop.get_platform_display():<20} webhook {shop.webhook_url()}  secret {shop.webhook_secret}\n")
