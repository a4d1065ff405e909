"""Exactly one send per run and step, with real commits and real concurrency."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from flows import engine
from flows.models import FlowRun, StepLog
from flows.recipes import create_from_recipe
from marketing.models import Send
from orders.actions import process_delivery
from orders.models import WebhookDelivery
from tests.conftest import load_fixture, shopify_headers
from tests.factories import ShopFactory
from tests.test_inbox_concurrency import together

pytestmark = pytest.mark.django_db(transaction=True)

LIVE_AT = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 21, 16, tzinfo=UTC)


@pytest.fixture
def shop(broker_down):
    shop = ShopFactory(slug="acme", platform="shopify", webhook_secret="shpss", postal_address="1 Main St")
    with time_machine.travel(LIVE_AT, tick=False):
        create_from_recipe(slug="order-confirmation", shop=shop, now=LIVE_AT, live=True)
    return shop


def post_same_order_three_times_at_once(shop) -> None:
    body = json.dumps(load_fixture("shopify", "orders_create.json")).encode()
    headers = shopify_headers(shop, body, "orders/create", "evt-1")
    answers = together(
        3, lambda _: Client().generic("POST", "/webhooks/shopify/acme/", body, content_type="application/json", **headers)
    )
    assert [a.status_code for a in answers] == [200, 200, 200]


def test_the_same_event_three_times_at_once_makes_one_run_and_one_send(shop):
    with time_machine.travel(NOW, tick=False):
        post_same_order_three_times_at_once(shop)
        [delivery_id] = WebhookDelivery.objects.values_list("pk", flat=True)
        together(3, lambda _: process_delivery(delivery_id=delivery_id, now=NOW))
        [run] = FlowRun.objects.all()
        together(3, lambda _: engine.advance_run(run_id=run.pk, now=NOW))
    assert Send.objects.count() == 1
    assert StepLog.objects.filter(step_key="send-confirmation").count() == 1


def test_two_ticks_at_once_hand_out_each_due_run_once(shop):
    with time_machine.travel(NOW, tick=False):
        post_same_order_three_times_at_once(shop)
        process_delivery(delivery_id=WebhookDelivery.objects.get().pk, now=NOW)
        FlowRun.objects.update(status="waiting", resume_at=NOW)
        claims = together(2, lambda _: engine.claim_due_runs(now=NOW))
        assert sorted(len(c) for c in claims) == [0, 1]
        run_id = next(c for c in claims if c)[0]
        results = together(2, lambda _: engine.advance_run(run_id=run_id, now=NOW))
    assert sorted(r.split(" ")[0] for r in results) == ["completed", "not"]
    assert Send.objects.count() == 1


def test_a_worker_killed_mid_step_leaves_the_run_to_be_reclaimed_and_sends_once(shop, monkeypatch):
    with time_machine.travel(NOW, tick=False):
        post_same_order_three_times_at_once(shop)
        process_delivery(delivery_id=WebhookDelivery.objects.get().pk, now=NOW)
        [run] = FlowRun.objects.all()

        # The worker dies after the send was decided but before the step committed.
        real_create = StepLog.objects.create

        def die(**kwargs):
            if kwargs.get("step_key") == "send-confirmation":
                raise SystemExit("worker killed")
            return real_create(**kwargs)

        monkeypatch.setattr(StepLog.objects, "create", die)
        with pytest.raises(SystemExit):
            engine.advance_run(run_id=run.pk, now=NOW)
        monkeypatch.setattr(StepLog.objects, "create", real_create)
        run.refresh_from_db()
        assert run.status == "active" and run.lease_until is not None
        assert Send.objects.count() == 0  # rolled back with the step

    later = NOW + engine.RUN_LEASE + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert engine.claim_due_runs(now=later) == [run.pk]
        assert engine.advance_run(run_id=run.pk, now=later) == "completed"
        assert engine.advance_run(run_id=run.pk, now=later).startswith("not due")
    assert Send.objects.count() == 1
    assert Send.objects.get().message is not None
