"""The engine on real PostgreSQL: entry rules, conditions, waits, jumps, leases, the tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from flows import engine
from flows.actions import pause_flow, resume_flow
from flows.events import FlowEvent
from flows.models import (
    DelayWait,
    EndStep,
    FlowRun,
    OrderStatusCondition,
    OrderTotalCondition,
    PlacedOrderCondition,
    SkippedEntry,
    SplitStep,
    StepLog,
)
from tests.factories import CustomerFactory, OrderFactory
from tests.flow_helpers import make_flow

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def order_event(order, *, event_id="e1", occurred_at=None) -> FlowEvent:
    return FlowEvent("new_order", event_id, occurred_at or order.placed_at, order.customer, order, order.shop)


def reasons(run: FlowRun) -> list[tuple[str, str]]:
    return list(StepLog.objects.filter(run=run).values_list("step_key", "reason"))


def test_a_matching_condition_runs_to_the_end_and_logs_each_step():
    make_flow(steps=[(OrderStatusCondition, {"key": "paid", "statuses": ["paid", "confirmed"]})], now=NOW)
    order = OrderFactory(status="paid", placed_at=NOW - timedelta(hours=1))
    [run] = engine.start_runs(event=order_event(order), now=NOW)
    assert engine.advance_run(run_id=run.pk, now=NOW) == "completed"
    run.refresh_from_db()
    assert run.status == "completed"
    assert reasons(run) == [("paid", "passed")]


def test_a_failed_condition_ends_the_run_with_its_reason():
    flow = make_flow(steps=[(OrderStatusCondition, {"key": "paid", "statuses": ["paid"]})], now=NOW)
    order = OrderFactory(status="pending", placed_at=NOW)
    [run] = engine.start_runs(event=order_event(order), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    run.refresh_from_db()
    assert run.status == "completed"
    assert reasons(run) == [("paid", "condition_failed:order_status")]
    assert flow.runs.count() == 1


def test_otherwise_jumps_forward_past_the_steps_in_between():
    make_flow(
        steps=[
            (OrderTotalCondition, {"key": "big", "operator": "gte", "amount": Decimal("100"), "otherwise_goto": "small"}),
            (EndStep, {"key": "big-end"}),
            (OrderStatusCondition, {"key": "small", "statuses": ["paid"]}),
        ],
        now=NOW,
    )
    order = OrderFactory(total=Decimal("10"), placed_at=NOW)
    [run] = engine.start_runs(event=order_event(order), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    assert reasons(run) == [("big", "condition_failed:order_total"), ("small", "passed")]


def test_a_backdated_order_outside_the_relevance_window_starts_nothing_and_says_so():
    flow = make_flow(steps=[(EndStep, {"key": "end"})], now=NOW)
    order = OrderFactory(placed_at=NOW - timedelta(days=10))
    assert engine.start_runs(event=order_event(order), now=NOW) == []
    skipped = SkippedEntry.objects.get(flow=flow)
    assert skipped.reason == "stale_event"
    assert "more than 7 days ago" in skipped.detail


@pytest.mark.parametrize(
    "rule, second_event_starts",
    [("once_per_customer", False), ("once_per_order", False), ("every_time", True)],
)
def test_entry_rules_are_enforced_by_the_database(rule, second_event_starts):
    make_flow(steps=[(EndStep, {"key": "end"})], entry_rule=rule, now=NOW)
    order = OrderFactory(placed_at=NOW)
    assert len(engine.start_runs(event=order_event(order, event_id="a"), now=NOW)) == 1
    again = engine.start_runs(event=order_event(order, event_id="b"), now=NOW)
    assert len(again) == (1 if second_event_starts else 0)
    # The same event replayed never starts a second run, whatever the rule.
    assert engine.start_runs(event=order_event(order, event_id="a"), now=NOW) == []


def test_not_again_within_n_days():
    make_flow(steps=[(EndStep, {"key": "end"})], entry_rule="not_within_days", entry_days=30, now=NOW)
    customer = CustomerFactory()
    first = OrderFactory(customer=customer, placed_at=NOW)
    second = OrderFactory(customer=customer, placed_at=NOW + timedelta(days=10))
    third = OrderFactory(customer=customer, placed_at=NOW + timedelta(days=31))
    assert len(engine.start_runs(event=order_event(first, event_id="1"), now=NOW)) == 1
    assert engine.start_runs(event=order_event(second, event_id="2"), now=NOW + timedelta(days=10)) == []
    assert len(engine.start_runs(event=order_event(third, event_id="3"), now=NOW + timedelta(days=31))) == 1
    assert SkippedEntry.objects.get(event_id="2").reason == "entered_recently"


def test_a_wait_is_claimed_by_the_tick_only_when_due():
    make_flow(steps=[(DelayWait, {"key": "wait", "minutes": 60}), (EndStep, {"key": "end"})], now=NOW)
    order = OrderFactory(placed_at=NOW)
    [run] = engine.start_runs(event=order_event(order), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    run.refresh_from_db()
    assert (run.status, run.step_key, run.resume_at) == ("waiting", "end", NOW + timedelta(hours=1))
    assert engine.claim_due_runs(now=NOW + timedelta(minutes=59)) == []
    assert engine.advance_run(run_id=run.pk, now=NOW + timedelta(minutes=59)).startswith("not due")
    assert engine.claim_due_runs(now=NOW + timedelta(minutes=60)) == [run.pk]
    # Leased: the next tick does not hand it out again.
    assert engine.claim_due_runs(now=NOW + timedelta(minutes=60, seconds=5)) == []
    assert engine.advance_run(run_id=run.pk, now=NOW + timedelta(minutes=60)) == "completed"


def test_a_paused_flow_holds_its_runs_and_resuming_continues_them():
    flow = make_flow(steps=[(DelayWait, {"key": "wait", "minutes": 60}), (EndStep, {"key": "end"})], now=NOW)
    [run] = engine.start_runs(event=order_event(OrderFactory(placed_at=NOW)), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    pause_flow(flow=flow)
    later = NOW + timedelta(hours=3)
    assert engine.claim_due_runs(now=later) == []
    assert engine.start_runs(event=order_event(OrderFactory(placed_at=later), event_id="x"), now=later) == []
    resume_flow(flow=flow)
    assert engine.claim_due_runs(now=later) == [run.pk]
    assert engine.advance_run(run_id=run.pk, now=later) == "completed"


def test_a_worker_that_died_mid_run_leaves_a_lease_the_tick_reclaims():
    make_flow(steps=[(EndStep, {"key": "end"})], now=NOW)
    [run] = engine.start_runs(event=order_event(OrderFactory(placed_at=NOW)), now=NOW)
    FlowRun.objects.filter(pk=run.pk).update(status="active", lease_until=NOW + timedelta(minutes=5))
    assert engine.claim_due_runs(now=NOW + timedelta(minutes=1)) == []
    assert engine.claim_due_runs(now=NOW + timedelta(minutes=6)) == [run.pk]
    assert engine.advance_run(run_id=run.pk, now=NOW + timedelta(minutes=6)) == "completed"


def test_a_split_is_sticky_per_customer_and_has_a_holdout():
    steps = [
        (SplitStep, {"key": "split", "holdout_percent": 20,
                     "paths": [{"name": "A", "weight": 1, "goto": "a"}, {"name": "B", "weight": 1, "goto": "b"}]}),
        (EndStep, {"key": "a"}),
        (EndStep, {"key": "b"}),
    ]  # fmt: skip
    make_flow(steps=steps, entry_rule="every_time", now=NOW)
    outcomes = {}
    for index in range(60):
        order = OrderFactory(placed_at=NOW)
        [run] = engine.start_runs(event=order_event(order, event_id=f"e{index}"), now=NOW)
        engine.advance_run(run_id=run.pk, now=NOW)
        outcomes[order.customer_id] = reasons(run)[0][1]
    assert set(outcomes.values()) == {"split:A", "split:B", "holdout"}
    # The same customer again lands on the same path.
    customer_id, first = next(iter(outcomes.items()))
    order = OrderFactory(customer_id=customer_id, placed_at=NOW)
    [run] = engine.start_runs(event=order_event(order, event_id="again"), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    assert reasons(run)[0][1] == first


def test_exit_on_order_ends_waiting_runs_with_the_reason():
    make_flow(
        steps=[(DelayWait, {"key": "wait", "minutes": 10080}), (EndStep, {"key": "end"})],
        exit_on_order=True,
        now=NOW,
    )
    first = OrderFactory(placed_at=NOW)
    [run] = engine.start_runs(event=order_event(first), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    second = OrderFactory(customer=first.customer, placed_at=NOW + timedelta(days=2))
    assert engine.exit_runs_on_order(customer_id=first.customer_id, order_id=second.pk, placed_at=second.placed_at) == 1
    run.refresh_from_db()
    assert (run.status, run.exit_reason) == ("exited", "placed_order")
    assert reasons(run)[-1] == ("end", "exited:placed_order")


def test_placed_an_order_during_the_wait_condition():
    make_flow(
        steps=[(PlacedOrderCondition, {"key": "ordered", "negate": True})],
        trigger="new_order",
        now=NOW,
    )
    first = OrderFactory(placed_at=NOW)
    [run] = engine.start_runs(event=order_event(first), now=NOW)
    OrderFactory(customer=first.customer, placed_at=NOW + timedelta(days=1))
    engine.advance_run(run_id=run.pk, now=NOW + timedelta(days=7))
    assert reasons(run) == [("ordered", "condition_failed:placed_order")]


def test_a_step_that_raises_fails_the_run_which_staff_can_retry():
    make_flow(steps=[(OrderStatusCondition, {"key": "status", "statuses": ["paid"]})], now=NOW)
    order = OrderFactory(placed_at=NOW)
    [run] = engine.start_runs(event=order_event(order), now=NOW)
    OrderStatusCondition.objects.filter(key="status").update(statuses=5)
    assert engine.advance_run(run_id=run.pk, now=NOW).startswith("failed at status")
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error.startswith("TypeError")
    assert reasons(run) == [("status", "error")]
    OrderStatusCondition.objects.filter(key="status").update(statuses=["paid"])
    assert engine.retry_runs(run_ids=[run.pk], now=NOW) == 1
    assert engine.advance_run(run_id=run.pk, now=NOW) == "completed"


def test_a_flow_that_ends_in_a_wait_completes_when_the_wait_is_over():
    make_flow(steps=[(DelayWait, {"key": "only-wait", "minutes": 30})], now=NOW)
    [run] = engine.start_runs(event=order_event(OrderFactory(placed_at=NOW)), now=NOW)
    assert engine.advance_run(run_id=run.pk, now=NOW).startswith("waiting at -end-")
    assert engine.advance_run(run_id=run.pk, now=NOW + timedelta(minutes=30)) == "completed"
    assert reasons(run) == [("only-wait", "waited_until")]
