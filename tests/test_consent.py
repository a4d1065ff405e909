from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from marketing import receivers
from marketing.consent import consent_status, set_consent
from marketing.models import Consent, ConsentEvent
from orders import signals as order_signals
from orders.models import Customer
from tests.conftest import load_fixture, run_pending, shopify_headers
from tests.factories import CustomerFactory, ShopFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def marketing_receivers():
    was_connected = receivers.disconnect()
    receivers.connect()
    yield
    if not was_connected:
        receivers.disconnect()


def shop_reports(customer, *, email=None, sms=None, at=T0, shop=None):
    shop = shop or ShopFactory(name="Acme Outdoors")
    order_signals.customer_updated.send(
        Customer,
        customer=customer,
        shop=shop,
        consent={"email": email, "sms": sms},
        event_id=f"test:{customer.pk}:{at.isoformat()}",
        occurred_at=at,
    )


def customer_says(customer, status, source, at, channel="email"):
    return set_consent(customer=customer, channel=channel, status=status, source=source, now=at)


def history(customer, channel="email"):
    events = ConsentEvent.objects.filter(customer=customer, channel=channel).order_by("occurred_at", "id")
    return [(e.old_status, e.new_status, e.source) for e in events]


def test_a_customer_nobody_asked_is_never_asked():
    customer = CustomerFactory()
    assert consent_status(customer, "email") == "never_asked"
    assert not Consent.objects.exists()


def test_shop_flags_become_consent_with_the_shops_time():
    customer = CustomerFactory()
    shop_reports(customer, email=True, sms=False)

    email = Consent.objects.get(customer=customer, channel="email")
    assert (email.status, email.source, email.changed_at) == ("subscribed", "shop", T0)
    assert email.detail == "Reported by the shop Acme Outdoors"
    assert consent_status(customer, "sms") == "unsubscribed"
    assert history(customer, "email") == [("never_asked", "subscribed", "shop")]
    assert history(customer, "sms") == [("never_asked", "unsubscribed", "shop")]


def test_a_flag_the_shop_never_set_changes_nothing():
    customer = CustomerFactory()
    shop_reports(customer, email=True, sms=None)
    shop_reports(customer, email=None, sms=None, at=T0 + timedelta(days=1))
    assert consent_status(customer, "email") == "subscribed"
    assert consent_status(customer, "sms") == "never_asked"
    assert not Consent.objects.filter(channel="sms").exists()


def test_the_same_report_twice_writes_one_event():
    customer = CustomerFactory()
    shop_reports(customer, email=True)
    shop_reports(customer, email=True, at=T0 + timedelta(hours=1))
    assert set_consent(customer=customer, channel="email", status="subscribed", source="staff", now=T0) is False
    assert ConsentEvent.objects.filter(customer=customer).count() == 1


def test_an_older_shop_report_never_overrides_the_customers_own_unsubscribe():
    customer = CustomerFactory()
    shop_reports(customer, email=True, at=T0)
    assert customer_says(customer, "unsubscribed", "unsubscribe_link", T0 + timedelta(days=2))
    # An update made at the shop before the unsubscribe, delivered after it.
    shop_reports(customer, email=True, at=T0 + timedelta(days=1))

    consent = Consent.objects.get(customer=customer, channel="email")
    assert (consent.status, consent.source) == ("unsubscribed", "unsubscribe_link")
    assert history(customer) == [
        ("never_asked", "subscribed", "shop"),
        ("subscribed", "unsubscribed", "unsubscribe_link"),
    ]


def test_a_newer_opt_in_at_the_shop_resubscribes_after_our_unsubscribe():
    customer = CustomerFactory()
    shop_reports(customer, email=False, at=T0)
    customer_says(customer, "subscribed", "preference_page", T0 + timedelta(days=1))
    customer_says(customer, "unsubscribed", "provider", T0 + timedelta(days=2))
    # The customer ticked the newsletter box at checkout: the shop's flag moved to True.
    shop_reports(customer, email=True, at=T0 + timedelta(days=3))

    consent = Consent.objects.get(customer=customer, channel="email")
    assert (consent.status, consent.source, consent.changed_at) == ("subscribed", "shop", T0 + timedelta(days=3))
    assert history(customer) == [
        ("never_asked", "unsubscribed", "shop"),
        ("unsubscribed", "subscribed", "preference_page"),
        ("subscribed", "unsubscribed", "provider"),
        ("unsubscribed", "subscribed", "shop"),
    ]


def test_a_shop_flag_repeated_on_a_later_unrelated_update_does_not_undo_an_unsubscribe():
    customer = CustomerFactory()
    shop_reports(customer, email=True, at=T0)
    customer_says(customer, "unsubscribed", "unsubscribe_link", T0 + timedelta(days=1))
    # The shop resends its unchanged flag when, say, the customer places an order.
    shop_reports(customer, email=True, at=T0 + timedelta(days=5))
    assert consent_status(customer, "email") == "unsubscribed"


def test_a_newer_opt_out_at_the_shop_applies_but_an_older_one_does_not():
    customer = CustomerFactory()
    set_consent(customer=customer, channel="sms", status="subscribed", source="preference_page", now=T0)
    shop_reports(customer, sms=False, at=T0 - timedelta(hours=1))
    assert consent_status(customer, "sms") == "subscribed"
    shop_reports(customer, sms=False, at=T0 + timedelta(hours=1))
    assert consent_status(customer, "sms") == "unsubscribed"


def test_unknown_channel_or_status_is_refused_in_words():
    customer = CustomerFactory()
    with pytest.raises(ValueError, match="not a channel"):
        set_consent(customer=customer, channel="fax", status="subscribed", source="staff", now=T0)
    with pytest.raises(ValueError, match="not a consent status"):
        set_consent(customer=customer, channel="email", status="maybe", source="staff", now=T0)


def test_consent_flows_in_from_a_real_shopify_customer_webhook_and_a_later_update_keeps_an_unsubscribe(
    shopify_shop, post
):
    data = load_fixture("shopify", "customers_create.json")
    body = json.dumps(data).encode()
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "customers/create", "evt-c1"))
    run_pending()
    customer = Customer.objects.get(email="bob@biller.com")
    assert consent_status(customer, "email") == "subscribed"
    assert consent_status(customer, "sms") == "unsubscribed"
    assert Consent.objects.get(customer=customer, channel="email").changed_at.isoformat() == "2026-11-19T16:20:00+00:00"

    set_consent(
        customer=customer,
        channel="email",
        status="unsubscribed",
        source="unsubscribe_link",
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )
    later = dict(data, updated_at="2026-11-25T10:00:00-05:00", orders_count=1)
    body = json.dumps(later).encode()
    post("/webhooks/shopify/acme/", body, **shopify_headers(shopify_shop, body, "customers/update", "evt-c2"))
    run_pending()
    assert consent_status(customer, "email") == "unsubscribed"
