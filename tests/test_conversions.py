"""Conversions: an order placed within the window after a send, an open or a click is
attributed to the last such touch, once, with its revenue."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured

from channels.actions import record_event, send_message
from channels.models import EventKind
from marketing import insight_receivers
from marketing.conversions import (
    attribute_order,
    attribution_windows,
    campaign_revenue,
    conversions_by_touch,
    conversions_for_sends,
)
from marketing.models import Campaign, Conversion, Send
from marketing.models.campaigns import Profile
from marketing.models.sends import BlockReason, Decision
from orders.models import Customer, Order
from tests.conftest import herald_signature, load_fixture, run_pending
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def customer() -> Customer:
    return CustomerFactory(email="mia.jensen@example.com")


def campaign(channel: str = "email", name: str = "Welcome") -> Campaign:
    return Campaign.objects.create(name=name, channel=channel, profile=Profile.MARKETING, status="active")


def sent(customer: Customer, at: datetime, *, channel: str = "email", campaign_: Campaign | None = None) -> Send:
    """A send that went out at ``at``: the decision, its ledger message and the
    provider's "sent" receipt."""
    campaign_ = campaign_ or campaign(channel)
    key = f"test:{campaign_.pk}:{customer.pk}:{at.isoformat()}"
    address = customer.email if channel == "email" else "+12125550147"
    message = send_message(kind=channel, address=address, idempotency_key=key, text="Hi", now=at)
    record_event(message=message, kind=EventKind.SENT, occurred_at=at, provider_event_id=f"{key}:sent")
    return Send.objects.create(
        campaign=campaign_,
        customer=customer,
        key=key,
        channel=channel,
        address=address,
        decision=Decision.SENT,
        message=message,
        decided_at=at,
    )


def touched(send: Send, kind: str, at: datetime) -> None:
    assert send.message is not None
    record_event(message=send.message, kind=kind, occurred_at=at, provider_event_id=f"{send.key}:{kind}:{at}")


def order(customer: Customer, at: datetime, total: str = "58.87", currency: str = "USD") -> Order:
    return OrderFactory(customer=customer, placed_at=at, total=Decimal(total), currency=currency)


def test_order_inside_the_window_after_a_send_is_one_conversion_with_its_revenue(customer):
    send = sent(customer, NOW - 4 * DAY)
    placed = order(customer, NOW)

    conversion = attribute_order(order=placed, now=NOW + HOUR)

    assert conversion is not None
    assert (conversion.send, conversion.touch, conversion.touched_at) == (send, "send", NOW - 4 * DAY)
    assert (conversion.revenue, conversion.currency, conversion.attributed_at) == (Decimal("58.87"), "USD", NOW + HOUR)
    assert Conversion.objects.count() == 1


def test_order_after_the_window_is_not_attributed(customer):
    sent(customer, NOW - 5 * DAY - HOUR)
    sent(customer, NOW - 25 * HOUR, channel="sms")
    assert attribute_order(order=order(customer, NOW), now=NOW) is None
    assert not Conversion.objects.exists()


def test_order_before_the_send_is_not_attributed(customer):
    placed = order(customer, NOW)
    sent(customer, NOW + HOUR)
    assert attribute_order(order=placed, now=NOW + 2 * HOUR) is None


def test_of_two_sends_the_last_one_wins(customer):
    sent(customer, NOW - 3 * DAY, campaign_=campaign(name="Welcome"))
    later = sent(customer, NOW - DAY, campaign_=campaign(name="Reminder"))
    conversion = attribute_order(order=order(customer, NOW), now=NOW)
    assert conversion is not None and conversion.send == later


def test_an_open_inside_the_window_after_an_older_send_wins_as_an_open(customer):
    older = sent(customer, NOW - 10 * DAY, campaign_=campaign(name="Welcome"))
    sent(customer, NOW - 2 * DAY, campaign_=campaign(name="Reminder"))
    touched(older, EventKind.OPENED, NOW - 11 * DAY + 2 * HOUR)  # a first open, long ago...
    touched(older, EventKind.OPENED, NOW - DAY)  # ...and the customer opens it again

    conversion = attribute_order(order=order(customer, NOW), now=NOW)

    assert conversion is not None
    assert (conversion.send, conversion.touch, conversion.touched_at) == (older, "open", NOW - DAY)


def test_a_click_is_a_touch_and_wins_over_its_own_earlier_open(customer):
    send = sent(customer, NOW - 3 * DAY)
    touched(send, EventKind.OPENED, NOW - 2 * DAY)
    touched(send, EventKind.CLICKED, NOW - 2 * DAY + HOUR)
    conversion = attribute_order(order=order(customer, NOW), now=NOW)
    assert conversion is not None and (conversion.touch, conversion.touched_at) == ("click", NOW - 2 * DAY + HOUR)


def test_the_same_order_is_attributed_once_however_often_it_is_asked(customer):
    sent(customer, NOW - DAY)
    placed = order(customer, NOW)
    first = attribute_order(order=placed, now=NOW)
    sent(customer, NOW - HOUR, campaign_=campaign(name="Later"))
    again = attribute_order(order=placed, now=NOW + DAY)
    assert first is not None and again == first
    assert Conversion.objects.count() == 1


def test_a_blocked_send_and_a_bounced_message_are_no_touch(customer):
    bounced = sent(customer, NOW - DAY)
    touched(bounced, EventKind.BOUNCED, NOW - DAY + HOUR)
    Send.objects.create(
        campaign=campaign(name="Blocked"),
        customer=customer,
        key="blocked",
        channel="email",
        decision=Decision.BLOCKED,
        reason=BlockReason.UNSUBSCRIBED,
        decided_at=NOW - HOUR,
    )
    assert attribute_order(order=order(customer, NOW), now=NOW) is None


def test_another_customers_send_does_not_count(customer):
    sent(CustomerFactory(), NOW - HOUR)
    assert attribute_order(order=order(customer, NOW), now=NOW) is None


def test_windows_come_from_settings_over_the_defaults(customer, settings):
    assert attribution_windows()["sms"]["send"] == timedelta(hours=24)
    assert attribution_windows()["whatsapp"]["click"] == timedelta(days=3)
    settings.HERALD_ATTRIBUTION_WINDOWS = {"sms": 48, "email": {"send": 0}}
    windows = attribution_windows()
    assert windows["sms"] == {"send": timedelta(hours=48), "open": timedelta(hours=48), "click": timedelta(hours=48)}
    assert windows["email"] == {"open": timedelta(days=5), "click": timedelta(days=5)}

    sent(customer, NOW - 30 * HOUR, channel="sms")
    email = sent(customer, NOW - HOUR)
    conversion = attribute_order(order=order(customer, NOW), now=NOW)
    assert conversion is not None and conversion.send.channel == "sms"
    touched(email, EventKind.CLICKED, NOW - HOUR + 60 * timedelta(seconds=1))
    assert attribute_order(order=order(customer, NOW + 2 * HOUR), now=NOW).send == email


def test_a_malformed_window_setting_says_what_is_wrong(settings):
    settings.HERALD_ATTRIBUTION_WINDOWS = {"email": {"view": 24}}
    with pytest.raises(ImproperlyConfigured, match="names the touch 'view'; use send, open or click"):
        attribution_windows()
    settings.HERALD_ATTRIBUTION_WINDOWS = {"e-mail": 24}
    with pytest.raises(ImproperlyConfigured, match="names the channel 'e-mail'; use one of: email, sms,"):
        attribution_windows()
    settings.HERALD_ATTRIBUTION_WINDOWS = {"sms": "24h"}
    with pytest.raises(ImproperlyConfigured, match=r"\['sms'\] must be a number of hours"):
        attribution_windows()


def test_campaign_revenue_is_summed_per_currency(customer):
    welcome = campaign(name="Welcome")
    other = campaign(name="Other")
    for n, (total, currency) in enumerate([("10.00", "USD"), ("5.50", "USD"), ("20.00", "EUR")]):
        send = sent(customer, NOW + n * 10 * DAY, campaign_=welcome)
        attribute_order(order=order(customer, send.decided_at + HOUR, total, currency), now=NOW)
    send = sent(customer, NOW + 40 * DAY, campaign_=other)
    attribute_order(order=order(customer, send.decided_at + HOUR, "99.00"), now=NOW)

    assert campaign_revenue(welcome) == [("EUR", Decimal("20.00")), ("USD", Decimal("15.50"))]
    assert campaign_revenue(campaign(name="Nothing yet")) == []
    conversions = conversions_for_sends(Send.objects.filter(campaign=welcome))
    assert conversions.count() == 3
    assert conversions_by_touch(conversions) == {"send": 3}


def test_an_order_created_through_the_pipeline_is_attributed_by_the_receiver(customer, client):
    send = sent(customer, datetime(2026, 11, 19, 9, 0, tzinfo=UTC))
    shop = ShopFactory(slug="corner-store", platform="custom", webhook_secret="hrld_test_secret")
    body = json.dumps(load_fixture("generic", "order_created.json")).encode()
    already = insight_receivers.is_connected()
    insight_receivers.connect()
    try:
        with time_machine.travel(NOW, tick=False):
            response = client.generic(
                "POST", shop.webhook_path(), body, content_type="application/json",
                HTTP_HERALD_SIGNATURE=herald_signature(shop.webhook_secret, body),
            )
            assert response.status_code == 200
            run_pending()
    finally:
        if not already:
            insight_receivers.disconnect()

    conversion = Conversion.objects.get()
    assert conversion.order == Order.objects.get(external_id="ord_10452")
    assert (conversion.send, conversion.touch, conversion.revenue, conversion.currency) == (
        send, "send", Decimal("58.87"), "USD"
    )
    assert conversion.attributed_at == NOW

