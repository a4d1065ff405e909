"""Dry runs: a flow over past events with a simulated clock, writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.backends import locmem
from channels.models import Message
from flows.actions import draft_version
from flows.dryrun import dry_run
from flows.models import DelayWait, EndStep, OrderStatusCondition, SendCampaignStep, TagCustomerStep
from marketing.consent import set_consent
from marketing.models import Campaign, CampaignVariant, CustomerTag, Send, Suppression
from orders.models import Customer, CustomerIdentity, Order, OrderStatusChange, Product, ProductView
from tests.factories import CustomerFactory, OrderFactory, ShopFactory
from tests.flow_helpers import add_steps, make_flow

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
WEEK = 7 * 24 * 60


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def past_order(days_ago: float, *, status: str = "paid", late_by: timedelta = timedelta(0), **fields) -> Order:
    """An order placed ``days_ago`` that reached Herald ``late_by`` after it was placed."""
    placed = NOW - timedelta(days=days_ago)
    order = OrderFactory(placed_at=placed, status=status, **fields)
    Order.objects.filter(pk=order.pk).update(created_at=placed + late_by)
    return order


def transactional_email() -> Campaign:
    campaign = Campaign.objects.create(name="Thank you", channel="email", profile="transactional", status="active")
    CampaignVariant.objects.create(
        campaign=campaign,
        name="A",
        subject="Thank you, {{ recipient.first_name }}",
        text_body="Your order {{ order.number }} came to {{ order.total_formatted }}.",
    )
    return campaign


def thank_you_flow(**fields):
    return make_flow(
        steps=[
            (OrderStatusCondition, {"key": "paid", "statuses": ["paid"]}),
            (DelayWait, {"key": "wait", "minutes": WEEK}),
            (SendCampaignStep, {"key": "thanks", "campaign": transactional_email()}),
        ],
        now=SINCE,
        **fields,
    )


@pytest.fixture
def history() -> dict[str, Order]:
    """A handful of past orders, each meeting the flow differently."""
    suppressed = CustomerFactory(email="bounced@example.com")
    Suppression.objects.create(value="bounced@example.com", channel="email", reason="hard_bounce", created_at=SINCE)
    invalid = CustomerFactory(email="", email_raw="not an address", email_valid=False)
    orders = {
        "sent": past_order(20),
        "pending": past_order(18, status="pending"),
        "suppressed": past_order(15, customer=suppressed),
        "invalid": past_order(14, customer=invalid),
        "waiting": past_order(3),
        "stale": past_order(12, late_by=timedelta(days=11)),
        "too_old": past_order(40),
    }
    orders["again"] = past_order(10, customer=orders["sent"].customer)
    return orders


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model._base_manager.count()
        for label in ("flows", "marketing", "channels", "orders")
        for model in apps.get_app_config(label).get_models()
    }


def test_a_dry_run_counts_runs_steps_and_blocked_sends_and_renders_what_would_go_out(history):
    flow = thank_you_flow()
    report = dry_run(flow=flow, since=SINCE, until=NOW)

    assert (report.events_considered, report.events_matched, report.runs_started) == (7, 7, 5)
    assert report.refused == {"stale_event": 1, "already_entered": 1}
    paid, wait, thanks = report.steps
    assert (paid.reached, dict(paid.outcomes)) == (5, {"passed": 4, "condition_failed:order_status": 1})
    assert (wait.reached, dict(wait.outcomes)) == (4, {"waited_until": 4})
    assert (thanks.reached, dict(thanks.outcomes)) == (3, {"sent": 1, "send_blocked": 2})
    assert dict(thanks.blocked) == {"suppressed": 1, "invalid_address": 1}
    assert thanks.waiting == 1
    assert dict(report.runs) == {"completed": 4, "waiting": 1}
    waiting = history["waiting"]
    assert report.waiting == [
        f"run -5 (customer {waiting.customer_id}, order {waiting.number}): "
        f"waiting at thanks until {NOW + timedelta(days=4):%Y-%m-%d %H:%M} UTC"
    ]
    [message] = report.rendered
    sent = history["sent"]
    assert (message.channel, message.recipient, message.step) == ("email", sent.customer.email, "thanks")
    assert message.at == sent.placed_at + timedelta(days=7)
    assert message.subject == "Thank you, Ada"
    assert message.text == f"Your order {sent.number} came to $10.00."
    assert report.would_send == 1


def test_a_dry_run_writes_nothing(history):
    flow = thank_you_flow(entry_rule="not_within_days", entry_days=1)
    before = row_counts()
    with CaptureQueriesContext(connection) as queries:
        report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert report.would_send == 2
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    assert row_counts() == before
    assert Send.objects.count() == 0
    assert Message.objects.count() == 0
    assert locmem.outbox == []
    # The session is writable again afterwards: the read-only mode ended with the dry run.
    CustomerFactory()


def test_the_relevance_window_and_entry_rules_apply_in_memory():
    once = thank_you_flow(name="Once", entry_rule="once_per_customer")
    every = thank_you_flow(name="Every", entry_rule="every_time")
    recent = thank_you_flow(name="Recent", entry_rule="not_within_days", entry_days=7)
    customer = CustomerFactory()
    for days_ago in (20, 16, 5):
        past_order(days_ago, customer=customer)
    past_order(9, customer=customer, late_by=timedelta(days=8))

    assert dry_run(flow=once, since=SINCE, until=NOW).refused == {"already_entered": 2, "stale_event": 1}
    assert dry_run(flow=every, since=SINCE, until=NOW).runs_started == 3
    assert dry_run(flow=recent, since=SINCE, until=NOW).refused == {"entered_recently": 1, "stale_event": 1}
    for model in ("FlowRun", "FlowEntry", "SkippedEntry", "StepLog"):
        assert apps.get_model("flows", model).objects.count() == 0


def test_once_per_order_keys_on_the_order_across_its_status_changes():
    flow = make_flow(
        trigger="order_status_changed", to_statuses=["shipped", "delivered"], entry_rule="once_per_order",
        steps=[(EndStep, {"key": "end"})], now=SINCE,
    )  # fmt: skip
    order = past_order(10)
    for days_ago, old, new in [(9, "paid", "shipped"), (8, "shipped", "delivered"), (7, "delivered", "refunded")]:
        moment = NOW - timedelta(days=days_ago)
        change = OrderStatusChange.objects.create(order=order, old_status=old, new_status=new, changed_at=moment)
        OrderStatusChange.objects.filter(pk=change.pk).update(recorded_at=moment)
    OrderStatusChange.objects.create(
        order=order, old_status="paid", new_status="shipped", changed_at=NOW - timedelta(days=6), applied=False
    )
    report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert (report.events_considered, report.events_matched, report.runs_started) == (3, 2, 1)
    assert report.refused == {"already_entered": 1}


def test_only_customers_registered_after_going_live_counts_from_the_start_of_a_draft_flow():
    flow = thank_you_flow(only_registered_after_live=True, live=False)
    early = CustomerFactory(registered_at=SINCE - timedelta(days=30))
    later = CustomerFactory(registered_at=NOW - timedelta(days=10))
    past_order(5, customer=early)
    past_order(5, customer=later)
    report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert (report.runs_started, report.refused) == (1, {"registered_before_live": 1})
    assert report.version_state == "draft"

    flow.status, flow.went_live_at = "live", NOW - timedelta(days=7)
    flow.save()
    assert dry_run(flow=flow, since=SINCE, until=NOW).refused == {"registered_before_live": 2}


def test_a_marketing_sms_in_quiet_hours_waits_for_the_morning_and_consent_blocks_are_counted():
    campaign = Campaign.objects.create(name="Offer", channel="sms", profile="marketing", status="active")
    CampaignVariant.objects.create(campaign=campaign, name="A", text_body="{{ shop.name }}: 20% off. Reply STOP to opt out")
    flow = make_flow(steps=[(SendCampaignStep, {"key": "offer", "campaign": campaign})], now=SINCE)
    people = [CustomerFactory(phone=f"+1202555014{n}", phone_valid=True, timezone="America/New_York") for n in range(3)]
    set_consent(customer=people[0], channel="sms", status="subscribed", source="staff", now=SINCE)
    set_consent(customer=people[1], channel="sms", status="unsubscribed", source="staff", now=SINCE)
    late_evening = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)  # 22:00 in New York
    for person in people:
        order = OrderFactory(customer=person, placed_at=late_evening)
        Order.objects.filter(pk=order.pk).update(created_at=late_evening)

    report = dry_run(flow=flow, since=SINCE, until=NOW)
    [offer] = report.steps
    assert dict(offer.outcomes) == {"send_deferred": 1, "sent": 1, "send_blocked": 2}
    assert dict(offer.blocked) == {"unsubscribed": 1, "never_subscribed": 1}
    [message] = report.rendered
    assert message.recipient == people[0].phone
    assert message.at == datetime(2026, 11, 10, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert message.text.endswith("20% off. Reply STOP to opt out")


def test_customers_who_order_during_the_wait_leave_a_flow_that_exits_on_order():
    flow = thank_you_flow(exit_on_order=True)
    first = past_order(20)
    past_order(17, customer=first.customer)
    past_order(20)
    report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert (report.runs_started, report.refused) == (2, {"already_entered": 1})
    assert dict(report.exits) == {"placed_order": 1}
    assert dict(report.runs) == {"exited": 1, "completed": 1}
    assert report.would_send == 1


def test_customers_and_product_views_are_replayed_from_their_own_history():
    shop = ShopFactory()
    other_shop = ShopFactory()
    registered = make_flow(trigger="customer_registered", steps=[(EndStep, {"key": "end"})], shop=shop, now=SINCE)
    viewed = make_flow(trigger="product_viewed", steps=[(EndStep, {"key": "end"})], entry_rule="every_time", now=SINCE)
    for home, days_ago in [(shop, 6), (other_shop, 5), (shop, 45)]:
        customer = CustomerFactory(registered_at=NOW - timedelta(days=days_ago))
        Customer.objects.filter(pk=customer.pk).update(created_at=NOW - timedelta(days=days_ago))
        CustomerIdentity.objects.create(customer=customer, shop=home, external_id=str(customer.pk))
    product = Product.objects.create(shop=shop, external_id="p1", name="Mug")
    viewer = CustomerFactory()
    for days_ago in (3, 2, 40):
        ProductView.objects.create(customer=viewer, product=product, viewed_at=NOW - timedelta(days=days_ago))

    report = dry_run(flow=registered, since=SINCE, until=NOW)
    assert (report.events_considered, report.events_matched, report.runs_started) == (2, 1, 1)
    report = dry_run(flow=viewed, since=SINCE, until=NOW)
    assert (report.events_considered, report.runs_started) == (2, 2)


def test_a_step_that_writes_anyway_fails_its_run_and_writes_nothing(monkeypatch):
    from marketing.tags import tag_customer

    def careless(self, run, now, dry_run=False):
        tag_customer(customer=run.customer, tag_name="vip", source="flow", now=now)

    monkeypatch.setattr(TagCustomerStep, "execute", careless)
    flow = make_flow(steps=[(TagCustomerStep, {"key": "tag", "tag": "vip"})], now=SINCE)
    past_order(2)
    report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert dict(report.runs) == {"failed": 1}
    assert "read-only transaction" in report.errors[0]
    assert CustomerTag.objects.count() == 0


def test_a_live_flow_with_edits_is_dry_run_on_its_draft():
    flow = thank_you_flow()
    draft = draft_version(flow=flow)
    draft.steps.filter(key="wait").delete()
    add_steps(draft, [(EndStep, {"key": "stop"})])
    draft.steps.filter(key="stop").update(position=1)
    past_order(2)
    report = dry_run(flow=flow, since=SINCE, until=NOW)
    assert (report.version, report.version_state) == (2, "draft")
    assert [(step.key, dict(step.outcomes)) for step in report.steps] == [
        ("stop", {"ended": 1}),
        ("paid", {}),
        ("thanks", {}),
    ]


def test_the_command_prints_the_report_as_a_table_with_a_progress_bar(history):
    flow = thank_you_flow(name="Thank you after a week")
    out, err = StringIO(), StringIO()
    call_command("flows", "dryrun", "Thank you after a week", "--since", "30d", stdout=out, stderr=err)
    text = out.getvalue()
    lines = [line.split() for line in text.splitlines()]
    assert ["Runs", "that", "would", "start", "5"] in lines
    assert ["stale_event", "1"] in lines
    assert ["thanks", "Action:", "send", "a", "campaign", "3", "send_blocked", "2"] in lines
    assert ["suppressed", "1"] in lines
    assert "Subject: Thank you, Ada" in text
    assert err.getvalue().endswith("] 100% 7/7 events\n")
    assert "[" + "#" * 30 + "]" in err.getvalue()
    assert Send.objects.count() == 0 and flow.runs.count() == 0


def test_the_command_prints_json():
    flow = thank_you_flow()
    past_order(10)
    out = StringIO()
    call_command("flows", "dryrun", str(flow.pk), "--since", "2026-11-01", "--json", stdout=out, stderr=StringIO())
    report = json.loads(out.getvalue())
    assert report["since"] == "2026-11-01T00:00:00+00:00"
    assert report["runs_started"] == 1
    assert report["steps"][2]["outcomes"] == {"sent": 1}
    assert report["rendered"][0]["subject"] == "Thank you, Ada"


@pytest.mark.parametrize(
    "args, words",
    [
        (["No such flow", "--since", "30d"], "No flow has the id or name 'No such flow'"),
        (["{flow}", "--since", "last month"], "Cannot read 'last month' as a moment"),
        (["{flow}", "--since", "1d", "--until", "3d"], "would start"),
    ],
)
def test_the_command_explains_what_it_cannot_do(args, words):
    flow = thank_you_flow()
    args = [a.format(flow=flow.pk) for a in args]
    with pytest.raises(CommandError, match=words):
        call_command("flows", "dryrun", *args, stdout=StringIO(), stderr=StringIO())
