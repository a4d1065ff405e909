"""The three seed flows end to end on real PostgreSQL and Redis: a signed webhook in, the
flow's messages in the channels ledger out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.utils import timezone

from channels.actions import deliver_message
from channels.backends import locmem
from channels.models import Message
from flows import engine
from flows.models import FlowRun, StepLog
from flows.recipes import create_from_recipe
from marketing.models import PromoCode, Send
from orders.actions import process_delivery
from orders.models import WebhookDelivery
from tests.conftest import load_fixture, shopify_headers
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db

LIVE_AT = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


@pytest.fixture
def shop():
    return ShopFactory(
        slug="acme", platform="shopify", webhook_secret="shpss", timezone="America/New_York",
        postal_address="1 Main St, Springfield", support_email="help@acme.example",
    )  # fmt: skip


def drain() -> None:
    """What the workers do: process deliveries, advance due runs, send queued messages."""
    now = timezone.now()
    for delivery_id in WebhookDelivery.objects.filter(status="pending").values_list("pk", flat=True):
        process_delivery(delivery_id=delivery_id, now=now)
    for _ in range(5):
        due = list(FlowRun.objects.filter(status="active", lease_until__isnull=True).values_list("pk", flat=True))
        due += engine.claim_due_runs(now=now)
        if not due:
            break
        for run_id in due:
            engine.advance_run(run_id=run_id, now=now)
    for message_id in Message.objects.filter(status="queued").values_list("pk", flat=True):
        deliver_message(message_id=message_id, now=now)


def post(client, shop, topic: str, payload: dict, event_id: str):
    body = json.dumps(payload).encode()
    response = client.generic(
        "POST", f"/webhooks/shopify/{shop.slug}/", body, content_type="application/json",
        **shopify_headers(shop, body, topic, event_id),
    )  # fmt: skip
    assert response.status_code == 200
    return response


def journey(run: FlowRun) -> list[tuple[str, str]]:
    return list(StepLog.objects.filter(run=run).values_list("step_key", "reason"))


def order_payload(**changes) -> dict:
    data = load_fixture("shopify", "orders_create.json")
    data.update(changes)
    return data


def test_order_confirmation_is_sent_for_a_paid_order(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 20, 21, 16, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "e1")
        drain()
    [message] = locmem.outbox
    assert message.kind == "email" and message.address == "john@example.com"
    assert "#9999" in message.subject
    assert "IPod Nano - 8GB" in message.text and "$213.94" in message.text
    run = FlowRun.objects.get()
    assert journey(run) == [("confirmed-or-paid", "passed"), ("send-confirmation", "sent")]
    assert run.status == "completed"


def test_a_pending_order_gets_no_confirmation_and_the_log_says_why(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 20, 21, 16, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(financial_status="pending"), "e1")
        drain()
    assert locmem.outbox == []
    assert journey(FlowRun.objects.get()) == [("confirmed-or-paid", "condition_failed:order_status")]


def test_a_replayed_webhook_starts_no_second_run_and_sends_once(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 20, 21, 16, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "e1")
        post(client, shop, "orders/paid", order_payload(), "e2")  # the same order again
        drain()
        from orders.actions import replay_deliveries

        replay_deliveries(delivery_ids=list(WebhookDelivery.objects.values_list("pk", flat=True)))
        drain()
    assert FlowRun.objects.count() == 1
    assert len(locmem.outbox) == 1


def test_a_backdated_order_outside_the_relevance_window_starts_nothing(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        flow = create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 12, 5, 12, 0, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "e1")  # placed 2026-11-20: 15 days ago
        drain()
    assert FlowRun.objects.count() == 0
    assert flow.skipped_entries.get().reason == "stale_event"
    assert locmem.outbox == []


def customer_payload(**changes) -> dict:
    data = load_fixture("shopify", "customers_create.json")
    data.update({"created_at": "2026-11-18T10:00:00-05:00", "updated_at": "2026-11-18T10:00:00-05:00", **changes})
    return data


def start_welcome(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        flow = create_from_recipe(slug="welcome", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 18, 15, 1, tzinfo=UTC), tick=False):
        post(client, shop, "customers/create", customer_payload(), "c1")
        drain()
    return flow


def test_the_welcome_flow_sends_a_reminder_with_a_promo_code_a_week_later_when_nothing_was_ordered(client, shop):
    start_welcome(client, shop)
    assert [m.subject for m in locmem.outbox] and len(locmem.outbox) == 1
    welcome = locmem.outbox[0]
    assert welcome.address == "bob@biller.com"
    assert welcome.data["list_unsubscribe_url"] in welcome.text
    run = FlowRun.objects.get()
    assert run.status == "waiting" and run.step_key == "no-order-yet"
    with time_machine.travel(datetime(2026, 11, 25, 15, 0, tzinfo=UTC), tick=False):
        drain()  # six days and 23 hours: not yet
    assert len(locmem.outbox) == 1
    with time_machine.travel(datetime(2026, 11, 25, 15, 2, tzinfo=UTC), tick=False):
        drain()
    assert len(locmem.outbox) == 2
    reminder = locmem.outbox[1]
    code = PromoCode.objects.get(customer__email="bob@biller.com")
    assert code.code in reminder.text and code.code in reminder.html
    run.refresh_from_db()
    assert run.status == "completed"
    assert [r for _, r in journey(run)] == ["passed", "sent", "waited_until", "passed", "sent"]


def test_the_welcome_flow_sends_no_reminder_when_the_customer_ordered_during_the_wait(client, shop):
    start_welcome(client, shop)
    with time_machine.travel(datetime(2026, 11, 21, 21, 16, tzinfo=UTC), tick=False):
        order = order_payload(
            customer=customer_payload(), email="bob@biller.com",
            created_at="2026-11-21T16:15:47-05:00", processed_at="2026-11-21T16:15:47-05:00",
            updated_at="2026-11-21T16:15:47-05:00",
        )  # fmt: skip
        post(client, shop, "orders/create", order, "o1")
        drain()
    with time_machine.travel(datetime(2026, 11, 26, 0, 0, tzinfo=UTC), tick=False):
        drain()
    assert len(locmem.outbox) == 1  # the welcome only
    run = FlowRun.objects.get()
    assert journey(run)[-1] == ("no-order-yet", "condition_failed:placed_order")
    assert not PromoCode.objects.filter(issued_at__isnull=False).exists()


def test_a_customer_who_registered_before_the_flow_went_live_is_not_welcomed(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        flow = create_from_recipe(slug="welcome", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 18, 15, 1, tzinfo=UTC), tick=False):
        post(client, shop, "customers/create", customer_payload(created_at="2026-11-01T10:00:00-05:00"), "c1")
        drain()
    assert locmem.outbox == []
    assert flow.skipped_entries.get().reason == "registered_before_live"


def test_an_unsubscribed_customer_gets_no_welcome_and_the_log_says_why(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="welcome", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 18, 15, 1, tzinfo=UTC), tick=False):
        post(client, shop, "customers/create", customer_payload(email_marketing_consent={"state": "unsubscribed"}), "c1")
        drain()
    assert locmem.outbox == []
    assert journey(FlowRun.objects.get()) == [("subscribed", "condition_failed:not_subscribed")]


def test_order_status_updates_send_the_shipping_update_with_tracking(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-status-updates", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 22, 19, 40, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "o1")
        drain()
        assert locmem.outbox == []  # paid is not one of the flow's statuses
        fulfillment = load_fixture("shopify", "fulfillments_update.json")
        fulfillment["shipment_status"] = "in_transit"
        post(client, shop, "fulfillments/update", fulfillment, "f1")
        drain()
    [message] = locmem.outbox
    assert "1Z2345" in message.text
    run = FlowRun.objects.get()
    assert journey(run) == [("route", "routed:shipped"), ("send-shipped", "sent"), ("end-shipped", "ended")]


def test_a_cancellation_sends_the_note_and_alerts_the_team(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-status-updates", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 22, 19, 40, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "o1")
        cancelled = order_payload(cancelled_at="2026-11-22T14:00:00-05:00", updated_at="2026-11-22T14:00:00-05:00",
                                  financial_status="refunded")  # fmt: skip
        post(client, shop, "orders/cancelled", cancelled, "o2")
        drain()
    addresses = sorted(m.address for m in locmem.outbox)
    assert addresses == ["help@acme.example", "john@example.com"]
    alert = next(m for m in locmem.outbox if m.address == "help@acme.example")
    assert "#9999" in alert.subject and "refunded" in alert.subject


def test_two_ticks_at_once_and_a_rerun_give_one_send_per_run_and_step(client, shop):
    test_the_welcome_flow_sends_a_reminder_with_a_promo_code_a_week_later_when_nothing_was_ordered(client, shop)
    run = FlowRun.objects.get()
    # Everything the engine could be asked again changes nothing.
    FlowRun.objects.filter(pk=run.pk).update(status="waiting", resume_at=datetime(2026, 11, 25, 15, 0, tzinfo=UTC),
                                             step_key="send-reminder")  # fmt: skip
    with time_machine.travel(datetime(2026, 11, 25, 16, 0, tzinfo=UTC), tick=False):
        drain()
    assert Send.objects.filter(key__endswith=":send-reminder").count() == 1
    assert Message.objects.count() == 2
    assert len(locmem.outbox) == 2


def test_a_fulfilment_that_overtakes_the_run_does_not_cancel_the_confirmation(client, shop):
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    with time_machine.travel(datetime(2026, 11, 20, 21, 16, tzinfo=UTC), tick=False):
        post(client, shop, "orders/create", order_payload(), "o1")
        for delivery_id in WebhookDelivery.objects.filter(status="pending").values_list("pk", flat=True):
            process_delivery(delivery_id=delivery_id)
        # The shop ships before the confirmation run gets its turn.
        post(client, shop, "fulfillments/update", load_fixture("shopify", "fulfillments_update.json"), "f1")
        drain()
    assert [m.subject for m in locmem.outbox if "#9999" in m.subject]
    run = FlowRun.objects.get(flow__recipe="order-confirmation")
    assert journey(run)[0] == ("confirmed-or-paid", "passed")
    assert StepLog.objects.get(run=run, step_key="confirmed-or-paid").detail == "order status was paid when triggered"
