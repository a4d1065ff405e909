from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest

from flows import engine
from flows.actions import draft_version, publish_version
from flows.events import FlowEvent
from flows.localtime import next_time_of_day
from flows.models import DelayWait, EndStep, FlowRun, OrderStatusCondition, StepLog, TimeOfDayWait
from tests.factories import CustomerFactory, OrderFactory
from tests.flow_helpers import add_steps, make_flow

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def start(order, event_id="e1"):
    [run] = engine.start_runs(
        event=FlowEvent("new_order", event_id, order.placed_at, order.customer, order, order.shop), now=NOW
    )
    return run


def logged(run):
    return list(StepLog.objects.filter(run=run).values_list("step_key", "reason"))


def waiting_flow():
    return make_flow(
        steps=[
            (OrderStatusCondition, {"key": "check", "statuses": ["paid"]}),
            (DelayWait, {"key": "wait", "minutes": 60}),
            (EndStep, {"key": "finish"}),
        ],
        now=NOW,
    )


def test_editing_a_live_flow_makes_a_new_version_for_new_runs_and_keeps_old_runs_pinned():
    flow = waiting_flow()
    run = start(OrderFactory(placed_at=NOW))
    engine.advance_run(run_id=run.pk, now=NOW)
    draft = draft_version(flow=flow)
    assert draft.number == 2
    assert [s.key for s in draft.ordered_steps()] == ["check", "wait", "finish"]
    draft.steps.filter(key="check").delete()
    publish_version(flow=flow, move_waiting_runs=False, now=NOW)
    run.refresh_from_db()
    assert run.version.number == 1
    newer = start(OrderFactory(placed_at=NOW), event_id="e2")
    assert newer.version.number == 2


def test_a_moved_run_resumes_at_the_step_with_the_same_key_and_never_repeats_one_done():
    flow = waiting_flow()
    run = start(OrderFactory(placed_at=NOW))
    engine.advance_run(run_id=run.pk, now=NOW)  # did "check" and "wait"; stands before "finish"
    draft = draft_version(flow=flow)
    # Staff add a step before the one the run stands at, and a new one after it.
    add_steps(draft, [(OrderStatusCondition, {"key": "new-check", "statuses": ["paid"]})])
    draft.steps.filter(key="new-check").update(position=5)
    add_steps(draft, [(EndStep, {"key": "after"})])
    draft.steps.filter(key="after").update(position=100)
    publish_version(flow=flow, move_waiting_runs=True, now=NOW)
    run.refresh_from_db()
    assert (run.version.number, run.step_key) == (2, "finish")
    engine.advance_run(run_id=run.pk, now=NOW + timedelta(hours=1))
    assert logged(run) == [
        ("check", "passed"),
        ("wait", "waited_until"),
        ("finish", "moved_to_v2"),
        ("finish", "ended"),
    ]


def test_a_moved_run_whose_step_was_deleted_resumes_at_the_next_step_that_still_exists():
    flow = make_flow(
        steps=[
            (DelayWait, {"key": "wait", "minutes": 60}),
            (OrderStatusCondition, {"key": "gone", "statuses": ["paid"]}),
            (EndStep, {"key": "finish"}),
        ],
        now=NOW,
    )
    run = start(OrderFactory(placed_at=NOW, status="pending"))
    engine.advance_run(run_id=run.pk, now=NOW)
    assert FlowRun.objects.get(pk=run.pk).step_key == "gone"
    draft = draft_version(flow=flow)
    draft.steps.filter(key="gone").delete()
    publish_version(flow=flow, move_waiting_runs=True, now=NOW)
    run.refresh_from_db()
    assert run.step_key == "finish"
    assert engine.advance_run(run_id=run.pk, now=NOW + timedelta(hours=1)) == "completed"
    assert ("gone", "condition_failed:order_status") not in logged(run)


def test_ten_o_clock_local_on_a_weekday_skips_the_weekend():
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=BERLIN).astimezone(UTC)
    moment = next_time_of_day(friday_evening, BERLIN, time(10, 0), [0, 1, 2, 3, 4])
    assert moment.astimezone(BERLIN) == datetime(2026, 11, 30, 10, 0, tzinfo=BERLIN)


def test_ten_o_clock_local_across_the_spring_dst_change():
    # Europe/Berlin moves from +01:00 to +02:00 on 2027-03-28 at 02:00.
    before = datetime(2027, 3, 27, 11, 0, tzinfo=BERLIN).astimezone(UTC)
    moment = next_time_of_day(before, BERLIN, time(10, 0), [])
    assert moment == datetime(2027, 3, 28, 8, 0, tzinfo=UTC)  # 10:00 CEST, not 09:00 or 11:00


def test_ten_o_clock_local_across_the_autumn_dst_change():
    # America/New_York moves from -04:00 to -05:00 on 2026-11-01 at 02:00.
    before = datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK).astimezone(UTC)
    moment = next_time_of_day(before, NEW_YORK, time(10, 0), [])
    assert moment == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)


def test_a_wall_time_skipped_by_dst_moves_to_the_end_of_the_gap():
    before = datetime(2027, 3, 27, 12, 0, tzinfo=BERLIN).astimezone(UTC)
    moment = next_time_of_day(before, BERLIN, time(2, 30), [])
    assert moment.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z") == "2027-03-28 03:00 CEST"


def test_a_time_of_day_wait_uses_the_customers_zone_through_a_dst_change():
    make_flow(steps=[(TimeOfDayWait, {"key": "ten", "at": time(10, 0), "weekdays": []}), (EndStep, {"key": "end"})],
              now=NOW)  # fmt: skip
    customer = CustomerFactory(timezone="Europe/Berlin")
    saturday = datetime(2027, 3, 27, 23, 0, tzinfo=BERLIN).astimezone(UTC)
    order = OrderFactory(customer=customer, placed_at=saturday)
    [run] = engine.start_runs(
        event=FlowEvent("new_order", "dst", order.placed_at, customer, order, order.shop), now=saturday
    )
    engine.advance_run(run_id=run.pk, now=saturday)
    run.refresh_from_db()
    assert run.resume_at == datetime(2027, 3, 28, 8, 0, tzinfo=UTC)
    assert StepLog.objects.get(run=run).detail == "until Sun 2027-03-28 10:00 Europe/Berlin"
