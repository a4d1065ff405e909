"""send_campaign: the one decision of whether a campaign reaches a customer, and why."""

from __future__ import annotations

import threading
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from channels.models import Message
from marketing.actions import Blocked, Deferred, SendContext, Sent, send_campaign
from marketing.models import PromoCode, PromoPool, Send, Suppression
from marketing.promo import generate_codes, issue_code
from tests.campaign_helpers import make_campaign, subscribe
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 in New York


@pytest.fixture
def shop():
    return ShopFactory(slug="acme", postal_address="1 Main St, Springfield", support_email="help@acme.example")


@pytest.fixture
def customer(shop):
    return CustomerFactory(phone="+12025550143", phone_raw="+12025550143", phone_valid=True, timezone="America/New_York")


def send(campaign, customer, shop, key="k1", now=NOW, order=None, **kw):
    return send_campaign(campaign=campaign, customer=customer, context=SendContext(order=order, shop=shop), key=key,
                         now=now, **kw)  # fmt: skip


def test_a_transactional_campaign_reaches_a_customer_who_never_subscribed(customer, shop):
    order = OrderFactory(shop=shop, customer=customer, number="#1001")
    verdict = send(make_campaign(), customer, shop, order=order)
    assert isinstance(verdict, Sent)
    message = verdict.send.message
    assert (message.kind, message.address, message.subject) == ("email", customer.email, "Order #1001 confirmed")
    assert "Total $10.00." in message.text
    assert message.idempotency_key == "send:k1"


def test_the_same_key_twice_gives_the_same_answer_and_one_message(customer, shop):
    campaign = make_campaign()
    first = send(campaign, customer, shop, order=OrderFactory(shop=shop, customer=customer))
    second = send(campaign, customer, shop)
    assert first.send.pk == second.send.pk
    assert Message.objects.count() == 1
    assert Send.objects.count() == 1


def test_marketing_needs_consent_and_says_which_is_missing(customer, shop):
    campaign = make_campaign(profile="marketing")
    verdict = send(campaign, customer, shop, key="a")
    assert isinstance(verdict, Blocked) and verdict.reason == "never_subscribed"
    from marketing.consent import set_consent

    set_consent(customer=customer, channel="email", status="unsubscribed", source="unsubscribe_link", now=NOW)
    assert send(campaign, customer, shop, key="b").reason == "unsubscribed"
    subscribe(customer, "email", NOW)
    verdict = send(campaign, customer, shop, key="c")
    assert isinstance(verdict, Sent)
    data = verdict.send.message.data
    assert data["list_unsubscribe_url"].startswith("http")
    assert data["list_unsubscribe_url"] in verdict.send.message.text
    assert "1 Main St, Springfield" in verdict.send.message.html


def test_suppression_blocks_even_transactional_sends(customer, shop):
    Suppression.objects.create(value=f"*@{customer.email.split('@')[1]}", channel="", reason="manual", created_at=NOW)
    verdict = send(make_campaign(), customer, shop, order=OrderFactory(shop=shop, customer=customer))
    assert isinstance(verdict, Blocked) and verdict.reason == "suppressed"
    assert "suppression list" in verdict.send.detail
    assert Message.objects.count() == 0


def test_no_valid_address_is_blocked_with_the_reason(shop):
    customer = CustomerFactory(email="", email_raw="not-an-email", email_valid=False)
    verdict = send(make_campaign(), customer, shop, order=OrderFactory(shop=shop, customer=customer))
    assert verdict.reason == "invalid_address"
    assert verdict.send.detail == "No valid email address."


def test_a_template_error_blocks_with_the_line_and_the_word(customer, shop):
    campaign = make_campaign(content={"subject": "Hi", "text_body": "Line one\n{{ ordr.number }}"}, activate=False)
    campaign.status = "active"
    campaign.save()
    verdict = send(campaign, customer, shop)
    assert verdict.reason == "render_error"
    assert "ordr" in verdict.send.detail and "2" in verdict.send.detail


def test_the_control_group_receives_nothing_and_assignment_is_sticky(shop):
    campaign = make_campaign(control_percent=50)
    verdicts = {}
    for index in range(40):
        person = CustomerFactory()
        verdicts[person.pk] = send(campaign, person, shop, key=f"c{index}", order=OrderFactory(shop=shop, customer=person)).send.reason
    assert set(verdicts.values()) == {"", "control_group"}
    from marketing.audience_lookup import assign_variant
    from orders.models import Customer

    for customer_id, reason in list(verdicts.items())[:10]:
        assert (assign_variant(campaign, Customer.objects.get(pk=customer_id)) is None) == (reason == "control_group")


def test_a_frequency_cap_drops_or_defers_then_expires(customer, shop, settings):
    settings.HERALD_QUIET_HOURS = {}
    settings.HERALD_FREQUENCY_CAPS = {"sms": {"count": 1, "hours": 24}}
    subscribe(customer, "sms", NOW)
    first = make_campaign(channel="sms", profile="marketing", name="first")
    dropper = make_campaign(channel="sms", profile="marketing", name="drop")
    deferrer = make_campaign(channel="sms", profile="marketing", name="defer", cap_policy="defer", defer_expiry_hours=30)
    assert isinstance(send(first, customer, shop, key="1"), Sent)
    dropped = send(dropper, customer, shop, key="2", now=NOW + timedelta(hours=1))
    assert isinstance(dropped, Blocked) and dropped.reason == "capped"
    deferred = send(deferrer, customer, shop, key="3", now=NOW + timedelta(hours=1))
    assert isinstance(deferred, Deferred) and deferred.until == NOW + timedelta(hours=24)
    assert Send.objects.get(key="3").decision == "deferred"
    assert isinstance(send(deferrer, customer, shop, key="3", now=NOW + timedelta(hours=24)), Sent)
    # A deferral that outlives its expiry is blocked as expired.
    short = make_campaign(channel="sms", profile="marketing", name="short", cap_policy="defer", defer_expiry_hours=10)
    assert isinstance(send(short, customer, shop, key="4", now=NOW + timedelta(hours=25)), Deferred)
    assert isinstance(send(short, customer, shop, key="4", now=NOW + timedelta(hours=30)), Deferred)
    expired = send(short, customer, shop, key="4", now=NOW + timedelta(hours=36))
    assert isinstance(expired, Blocked) and expired.reason == "expired"
    assert "Frequency cap" in expired.send.detail


@pytest.mark.parametrize(
    "local_time, zone, expected_utc",
    [
        # 22:00 on a normal evening -> 09:00 the next morning.
        (datetime(2026, 11, 23, 22, 0), "America/New_York", datetime(2026, 11, 24, 14, 0, tzinfo=UTC)),
        # The night the clocks go back (2026-11-01 02:00 EDT -> 01:00 EST): 09:00 EST.
        (datetime(2026, 10, 31, 23, 0), "America/New_York", datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
        # The night the clocks go forward (2027-03-14 02:00 EST -> 03:00 EDT): 09:00 EDT.
        (datetime(2027, 3, 13, 21, 30), "America/New_York", datetime(2027, 3, 14, 13, 0, tzinfo=UTC)),
        # 07:00 in Berlin: later that morning.
        (datetime(2026, 11, 24, 7, 0), "Europe/Berlin", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_defer_to_the_next_allowed_minute_in_the_customers_zone(shop, settings, local_time, zone, expected_utc):
    settings.HERALD_QUIET_HOURS = {"sms": ["21:00", "09:00"]}
    customer = CustomerFactory(phone="+12025550143", phone_raw="+12025550143", phone_valid=True, timezone=zone)
    subscribe(customer, "sms", NOW)
    now = local_time.replace(tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)
    verdict = send(make_campaign(channel="sms", profile="marketing"), customer, shop, now=now)
    assert isinstance(verdict, Deferred)
    assert verdict.until == expected_utc
    assert isinstance(send(verdict.send.campaign, customer, shop, now=verdict.until), Sent)


def test_quiet_hours_never_hold_back_a_transactional_message(customer, shop, settings):
    settings.HERALD_QUIET_HOURS = {"sms": ["21:00", "09:00"]}
    late = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)  # 22:30 in New York
    campaign = make_campaign(channel="sms", content={"text_body": "Order {{ order.number }} shipped"})
    assert isinstance(send(campaign, customer, shop, now=late, order=OrderFactory(shop=shop, customer=customer)), Sent)


def test_a_promo_code_is_issued_before_rendering_once_per_customer(customer, shop):
    pool = PromoPool.objects.create(name="Back", slug="back", pattern="BACK-####")
    generate_codes(pool=pool, count=5)
    content = {"subject": "A gift", "text_body": "Code {{ recipient.last_received_promo_code('back') }}"}
    campaign = make_campaign(promo_pool=pool, content=content)
    verdict = send(campaign, customer, shop, key="p1")
    code = PromoCode.objects.get(customer=customer)
    assert f"Code {code.code}" == verdict.send.message.text
    again = send(campaign, customer, shop, key="p2")
    assert again.send.message.text == f"Code {code.code}"
    assert PromoCode.objects.filter(issued_at__isnull=False).count() == 1


def test_an_empty_pool_blocks_with_the_reason(customer, shop):
    pool = PromoPool.objects.create(name="Empty", slug="empty")
    campaign = make_campaign(promo_pool=pool, content={"subject": "x", "text_body": "{{ recipient.last_received_promo_code('empty') }}"})
    assert send(campaign, customer, shop).reason == "no_promo_code"


def test_a_marketing_email_from_a_shop_without_a_postal_address_is_blocked(customer):
    bare = ShopFactory(slug="bare", postal_address="")
    subscribe(customer, "email", NOW)
    verdict = send(make_campaign(profile="marketing"), customer, bare)
    assert verdict.reason == "non_compliant"
    assert "postal address" in verdict.send.detail


def test_a_dry_run_decides_and_renders_but_writes_nothing(customer, shop):
    campaign = make_campaign()
    verdict = send(campaign, customer, shop, order=OrderFactory(shop=shop, customer=customer), dry_run=True)
    assert isinstance(verdict, Sent)
    assert verdict.send.pk is None
    assert verdict.send.rendered.subject.startswith("Order ")
    assert Send.objects.count() == 0 and Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_parallel_sends_never_hand_out_one_code_twice():
    pool = PromoPool.objects.create(name="Race", slug="race", pattern="R-####")
    generate_codes(pool=pool, count=8)
    customers = [CustomerFactory() for _ in range(8)]
    twin = customers[0]
    barrier = threading.Barrier(10)
    issued: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        person = customers[index] if index < 8 else twin
        barrier.wait()
        code = issue_code(pool=pool, customer=person, send_key=f"race:{index}", now=NOW)
        with lock:
            issued.append(f"{person.pk}:{code.code if code else None}")
        connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes_by_customer: dict[str, set[str]] = {}
    for entry in issued:
        person, code = entry.split(":", 1)
        codes_by_customer.setdefault(person, set()).add(code)
    assert len(issued) == 10
    # The twin's three parallel sends got one code between them.
    assert all(len(codes) == 1 for codes in codes_by_customer.values())
    all_codes = [next(iter(codes)) for codes in codes_by_customer.values()]
    assert len(all_codes) == len(set(all_codes)) == 8
    assert PromoCode.objects.filter(issued_at__isnull=False).count() == 8
