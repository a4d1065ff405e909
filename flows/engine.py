"""The flow engine: start runs from events, advance them step by step, claim due ones.

Exactly once: a run's entry is a unique (flow, dedupe key) row; a send's idempotency
key is (run, step key), and marketing's send record is unique on it; a run is
advanced only by the worker holding its lease. Celery may run a task twice; the
database decides what happens once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from flows import clock
from flows.events import FlowEvent
from flows.models import EntryRule, Flow, FlowEntry, FlowRun, FlowStatus, RunStatus, SkippedEntry, StepLog
from flows.results import StepResult

log = logging.getLogger(__name__)

RUN_LEASE = timedelta(minutes=5)
# The step key of a run past its last step (a flow ending in a wait). Step keys start with
# a letter or digit, so this cannot be one.
END = "-end-"
ENQUEUE_LEASE = timedelta(seconds=60)
MAX_STEPS_PER_ADVANCE = 200
BATCH = 100


# --- entry ------------------------------------------------------------------------------


def _skip(flow: Flow, event: FlowEvent, reason: str, detail: str, now: datetime) -> None:
    SkippedEntry.objects.get_or_create(
        flow=flow,
        event_id=event.event_id[:200],
        defaults={
            "customer": event.customer,
            "order": event.order,
            "reason": reason,
            "detail": detail[:500],
            "occurred_at": event.occurred_at,
            "created_at": now,
        },
    )


def _matches(flow: Flow, event: FlowEvent) -> bool:
    if flow.shop_id and (event.shop is None or event.shop.pk != flow.shop_id):
        return False
    if event.trigger == "order_status_changed" and not flow.statuses_match(event.old_status, event.new_status):
        return False
    return True


def _dedupe_key(flow: Flow, event: FlowEvent, now: datetime) -> tuple[str | None, str]:
    """The run's entry key, or None and why the entry rule refuses."""
    assert event.customer is not None
    if flow.entry_rule == EntryRule.ONCE_PER_CUSTOMER:
        return f"customer:{event.customer.pk}", ""
    if flow.entry_rule == EntryRule.ONCE_PER_ORDER:
        if event.order is None:
            return None, "no_order"
        return f"order:{event.order.pk}", ""
    if flow.entry_rule == EntryRule.NOT_WITHIN_DAYS:
        FlowEntry.objects.get_or_create(
            flow=flow, customer=event.customer, defaults={"last_entered_at": now - timedelta(days=10000)}
        )
        entry = FlowEntry.objects.select_for_update().get(flow=flow, customer=event.customer)
        if entry.last_entered_at > now - timedelta(days=flow.entry_days):
            return None, "entered_recently"
        entry.last_entered_at = now
        entry.save(update_fields=["last_entered_at"])
    return f"event:{event.event_id}", ""


def start_runs(*, event: FlowEvent, now: datetime | None = None) -> list[FlowRun]:
    """Create the runs an event starts, in the caller's transaction (the orders
    processing one), and advance them after commit. A replayed event starts nothing
    twice: its entry key is already taken."""
    now = now or clock.now()
    if event.customer is None:
        return []
    started = []
    for flow in Flow.objects.filter(status=FlowStatus.LIVE, trigger=event.trigger):
        if not _matches(flow, event):
            continue
        version = flow.current_version
        if version is None:
            continue
        if now - event.occurred_at > timedelta(days=flow.relevance_days):
            _skip(flow, event, "stale_event", f"happened {event.occurred_at:%Y-%m-%d %H:%M} UTC, "
                  f"more than {flow.relevance_days} days ago", now)  # fmt: skip
            continue
        if flow.only_registered_after_live:
            registered = event.customer.registered_at
            if registered is None or flow.went_live_at is None or registered < flow.went_live_at:
                _skip(flow, event, "registered_before_live", "the customer registered before the flow went live", now)
                continue
        with transaction.atomic():
            key, refused = _dedupe_key(flow, event, now)
            if key is None:
                _skip(flow, event, refused, "", now)
                continue
            try:
                with transaction.atomic():
                    run = FlowRun.objects.create(
                        flow=flow,
                        version=version,
                        customer=event.customer,
                        order=event.order,
                        dedupe_key=key[:200],
                        trigger_event=event.as_json(),
                        status=RunStatus.ACTIVE,
                        started_at=now,
                    )
            except IntegrityError:
                _skip(flow, event, "already_entered", f"entry rule {flow.entry_rule}: {key}", now)
                continue
        started.append(run)
        transaction.on_commit(lambda run_id=run.pk: enqueue_advance(run_id))
    return started


def enqueue_advance(run_id: int) -> None:
    from flows.tasks import advance_run_task

    try:
        advance_run_task.apply_async(args=[run_id], retry=True, retry_policy={"max_retries": 0})
    except Exception as exc:
        log.warning("Could not enqueue run %s (%s); the flows tick will pick it up.", run_id, exc)


def exit_runs_on_order(*, customer_id: int, order_id: int, placed_at: datetime, now: datetime | None = None) -> int:
    """Waiting runs of flows that say "leave when the customer orders" end here."""
    now = now or clock.now()
    runs = list(
        FlowRun.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(customer_id=customer_id, status=RunStatus.WAITING, flow__exit_on_order=True, started_at__lt=placed_at)
        .exclude(order_id=order_id)
    )
    detail = f"order {order_id} placed {placed_at:%Y-%m-%d %H:%M} UTC"
    StepLog.objects.bulk_create(
        StepLog(run=run, step_key=run.step_key, step_type="exit", outcome="exit", reason="exited:placed_order",
                detail=detail, executed_at=now)  # fmt: skip
        for run in runs
    )
    FlowRun.objects.filter(pk__in=[run.pk for run in runs]).update(
        status=RunStatus.EXITED, exit_reason="placed_order", finished_at=now, resume_at=None, lease_until=None
    )
    return len(runs)


# --- advancing ----------------------------------------------------------------------------


def _claim(run_id: int, now: datetime) -> bool:
    """Take the run's lease with a conditional UPDATE that exactly one worker wins. The
    UPDATE filters on the run's own columns only: a filter through the flow would make
    Django write ``WHERE id IN (subquery)``, which PostgreSQL does not re-check after
    waiting for a concurrent update, so two workers could both win."""
    flow_id = FlowRun.objects.filter(pk=run_id).values_list("flow_id", flat=True).first()
    if flow_id is None or not Flow.objects.filter(pk=flow_id, status=FlowStatus.LIVE).exists():
        return False
    due_waiting = Q(status=RunStatus.WAITING, resume_at__lte=now)
    fresh_active = Q(status=RunStatus.ACTIVE, lease_until__isnull=True)
    return (
        FlowRun.objects.filter(pk=run_id)
        .filter(due_waiting | fresh_active)
        .update(status=RunStatus.ACTIVE, lease_until=now + RUN_LEASE, resume_at=None)
        == 1
    )


def advance_run(*, run_id: int, now: datetime | None = None) -> str:
    """Execute a run's steps from where it stands until a wait, the end, or an error."""
    now = now or clock.now()
    if not _claim(run_id, now):
        return "not due, not live, or advanced by another worker"
    run = FlowRun.objects.select_related("flow", "version", "customer", "order__shop").get(pk=run_id)
    steps = run.version.ordered_steps()
    keys = [s.key for s in steps]
    if run.step_key == END:
        index = len(steps)
    elif run.step_key:
        if run.step_key not in keys:
            _fail(run, steps[0], LookupError(f"The run stands at {run.step_key!r}, not a step of this version."), now)
            return "failed: unknown step"
        index = keys.index(run.step_key)
    else:
        index = 0
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if index >= len(steps):
            _finish(run, RunStatus.COMPLETED, now)
            return "completed"
        step = steps[index]
        try:
            with transaction.atomic():
                result = step.execute(run, now)
                index = _apply(run, steps, index, step, result, now)
        except Exception as exc:
            log.exception("Run %s failed at step %s", run.pk, step.key)
            _fail(run, step, exc, now)
            return f"failed at {step.key}: {exc}"
        if run.status == RunStatus.WAITING:
            return f"waiting at {run.step_key} until {run.resume_at:%Y-%m-%d %H:%M} UTC"
        if run.status != RunStatus.ACTIVE:
            return str(run.status)
    _fail(run, steps[min(index, len(steps) - 1)], RuntimeError("too many steps in one advance"), now)
    return "failed: too many steps"


def _apply(run: FlowRun, steps: list, index: int, step, result: StepResult, now: datetime) -> int:  # type: ignore[no-untyped-def]
    StepLog.objects.create(
        run=run,
        step_key=step.key,
        step_type=type(step).__name__,
        outcome=result.outcome,
        reason=result.reason[:100],
        detail=result.detail[:500],
        send=result.send if result.send is not None and result.send.pk else None,
        executed_at=now,
    )
    keys = [s.key for s in steps]
    if result.outcome in ("next", "wait"):
        index += 1
    elif result.outcome == "goto":
        target = keys.index(result.goto) if result.goto in keys else -1
        if target <= index:
            raise ValueError(f"Step {step.key} jumps to {result.goto!r}, which is not a later step.")
        index = target
    elif result.outcome in ("end", "exit"):
        run.status = RunStatus.COMPLETED if result.outcome == "end" else RunStatus.EXITED
        run.exit_reason = result.reason if result.outcome == "exit" else ""
        run.finished_at = now
        run.lease_until = None
        run.save(update_fields=["status", "exit_reason", "finished_at", "lease_until", "updated_at"])
        return index
    elif result.outcome != "defer":
        raise ValueError(f"Unknown step outcome {result.outcome!r}.")
    run.step_key = keys[index] if index < len(keys) else END
    if result.outcome in ("wait", "defer"):
        run.status = RunStatus.WAITING
        run.resume_at = result.resume_at
        run.lease_until = None
    run.save(update_fields=["step_key", "status", "resume_at", "lease_until", "updated_at"])
    return index


def _finish(run: FlowRun, status: str, now: datetime) -> None:
    run.status = status
    run.finished_at = now
    run.lease_until = None
    run.step_key = ""
    run.save(update_fields=["status", "finished_at", "lease_until", "step_key", "updated_at"])


def _fail(run: FlowRun, step, exc: Exception, now: datetime) -> None:  # type: ignore[no-untyped-def]
    summary = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        StepLog.objects.create(
            run=run,
            step_key=step.key,
            step_type=type(step).__name__,
            outcome="error",
            reason="error",
            detail=summary[:500],
            executed_at=now,
        )
        run.status = RunStatus.FAILED
        run.error = summary
        run.lease_until = None
        run.step_key = step.key
        run.save(update_fields=["status", "error", "lease_until", "step_key", "updated_at"])


def retry_runs(*, run_ids: list[int], now: datetime | None = None) -> int:
    """Failed runs go back to the step that failed (staff fixed the cause)."""
    now = now or clock.now()
    with transaction.atomic():
        ids = list(FlowRun.objects.filter(pk__in=run_ids, status=RunStatus.FAILED).values_list("pk", flat=True))
        FlowRun.objects.filter(pk__in=ids).update(
            status=RunStatus.WAITING, resume_at=now, error="", lease_until=None, finished_at=None
        )
        for run_id in ids:
            transaction.on_commit(lambda run_id=run_id: enqueue_advance(run_id))
    return len(ids)


# --- the beat -------------------------------------------------------------------------------


def claim_due_runs(*, now: datetime, batch: int = BATCH) -> list[int]:
    """Due waiting runs of live flows, by the partial index on resume_at; leased for a
    minute so the next tick does not hand them out again."""
    with transaction.atomic():
        # A worker that died mid-run left it active with an expired lease: back to waiting.
        FlowRun.objects.filter(status=RunStatus.ACTIVE, lease_until__lt=now).update(
            status=RunStatus.WAITING, resume_at=now, lease_until=None
        )
        # A run whose first enqueue was lost (broker down) is active without a lease.
        FlowRun.objects.filter(status=RunStatus.ACTIVE, lease_until__isnull=True, updated_at__lt=now - ENQUEUE_LEASE).update(
            status=RunStatus.WAITING, resume_at=now
        )
        ids = list(
            FlowRun.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=RunStatus.WAITING, resume_at__lte=now, flow__status=FlowStatus.LIVE)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("resume_at")
            .values_list("pk", flat=True)[:batch]
        )
        if ids:
            FlowRun.objects.filter(pk__in=ids).update(lease_until=now + ENQUEUE_LEASE)
            for run_id in ids:
                transaction.on_commit(lambda run_id=run_id: enqueue_advance(run_id))
    return ids


def tick(*, now: datetime | None = None) -> str:
    from flows.heartbeat import record_tick

    now = now or clock.now()
    claimed = claim_due_runs(now=now)
    record_tick("flows", now)
    return f"claimed {len(claimed)} due runs"
