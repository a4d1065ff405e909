from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory

from orders.models import Customer, Order, Platform, Shop
from orders.statuses import OrderStatus


class ShopFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shop
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Shop {n}")
    slug = factory.Sequence(lambda n: f"shop-{n}")
    platform = Platform.SHOPIFY
    webhook_secret = "test-secret"
    currency = "USD"
    timezone = "America/New_York"
    country = "US"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    email_raw = factory.SelfAttribute("email")
    email_valid = True
    first_name = "Ada"
    last_name = "Lovelace"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    shop = factory.SubFactory(ShopFactory)
    external_id = factory.Sequence(lambda n: str(1000 + n))
    number = factory.LazyAttribute(lambda o: f"#{o.external_id}")
    customer = factory.SubFactory(CustomerFactory)
    status = OrderStatus.PAID
    raw_status = "paid/unfulfilled"
    currency = "USD"
    total = Decimal("10.00")
    placed_at = factory.LazyFunction(lambda: datetime(2026, 11, 1, 12, tzinfo=UTC))
    source_updated_at = factory.SelfAttribute("placed_at")
