"""Dry runs: a flow over past events with a simulated clock, reporting what would happen
and writing nothing.

Past events are rebuilt from the orders history (order creations, applied status
changes, customers created and registered, product views), in the order Herald learned
of them. An event carries two times: when it happened at the shop (``occurred_at``) and
when Herald learned of it (the row's own record time, never earlier). The simulated
clock stands at the second when the flow sees an event, as the engine's does, so the
relevance window compares the two: an order imported ten days after it was placed is
stale here as it would have been live. ``since`` and ``until`` bound that clock.

Entry rules, the relevance window and "only customers registered after the flow went
live" (a flow that never went live uses ``since`` as that moment) are the engine's,
held in memory: a set of taken entry keys and the last entry time per customer. The
dry run starts from a clean slate: runs the flow really has do not count.

Each run walks the flow's draft version (else its current one) with an in-memory run
that quacks like ``FlowRun``. Conditions and waits execute as they are; a wait moves the
run's clock to its end, never past ``until`` (a run still waiting there is reported so);
steps that act are called with ``dry_run=True``, with a negative run id so no send key
can meet a real one. Known limits, also listed in every report: conditions read today's
data (the database cannot be rewound, so "placed an order during the wait" sees orders up
to now and an order's status is today's), and frequency caps count only real sends.

Two safety nets besides ``dry_run=True``: everything runs in a transaction set READ ONLY
(PostgreSQL refuses any write; a step that tries fails its run, and the report says so)
that is rolled back at the end.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Prefetch
from django.db.models.functions import Greatest
from django.utils.html import strip_tags

from flows import clock
from flows.engine import MAX_STEPS_PER_ADVANCE, _matches
from flows.events import FlowEvent
from flows.models import EntryRule, Flow, FlowStatus, FlowVersion, RunStatus, TriggerKind
from flows.results import StepResult
from orders.models import Customer, CustomerIdentity, Order, OrderStatusChange, ProductView

Progress = Callable[[int, int], None]

MAX_DEFERRALS = 50
KEPT_LINES = 20
TEXT_EXCERPT = 400
CHUNK = 2000

NOTES = [
    "Conditions read today's data: a dry run cannot rewind the database, so an order's status "
    "is today's and \"placed an order during the wait\" sees orders placed up to now.",
    "Frequency caps count only real sends, not the ones this dry run would have made.",
    "Entry rules start from a clean slate: runs the flow really has do not count.",
]


# --- the report ---------------------------------------------------------------------------


@dataclass
class StepTally:
    """What happened at one step: runs that reached it, each execution's reason code (as
    the step log would hold it), marketing's block reasons, and runs left waiting here."""

    key: str
    type: str
    kind: str
    reached: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    blocked: Counter[str] = field(default_factory=Counter)
    waiting: int = 0

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "outcomes": dict(self.outcomes.most_common()), "blocked": dict(self.blocked.most_common())}


@dataclass
class RenderedMessage:
    run: int
    step: str
    at: datetime
    campaign: str
    variant: str
    channel: str
    recipient: str
    customer_id: int
    subject: str
    text: str

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass
class DryRunReport:
    """What the flow would have done. ``as_json()`` gives it as plain data."""

    flow_id: int
    flow_name: str
    version: int
    version_state: str
    trigger: str
    since: datetime
    until: datetime
    events_considered: int = 0
    events_matched: int = 0
    runs_started: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    steps: list[StepTally] = field(default_factory=list)
    runs: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)
    waiting: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rendered: list[RenderedMessage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def would_send(self) -> int:
        return sum(step.outcomes["sent"] for step in self.steps)

    @property
    def blocked(self) -> Counter[str]:
        return sum((step.blocked for step in self.steps), Counter())

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": {"id": self.flow_id, "name": self.flow_name, "trigger": self.trigger},
            "version": {"number": self.version, "state": self.version_state},
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "events_considered": self.events_considered,
            "events_matched": self.events_matched,
            "runs_started": self.runs_started,
            "refused": dict(self.refused.most_common()),
            "steps": [step.as_json() for step in self.steps],
            "would_send": self.would_send,
            "blocked": dict(self.blocked.most_common()),
            "runs": {status: self.runs[status] for status in ("completed", "exited", "failed", "waiting")},
            "exits": dict(self.exits.most_common()),
            "waiting": self.waiting,
            "errors": self.errors,
            "rendered": [message.as_json() for message in self.rendered],
            "notes": self.notes,
        }


# --- past events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PastEvent:
    event: FlowEvent
    arrived_at: datetime  # when Herald learned of it: the engine's "now" at entry


def _orders(since: datetime, until: datetime) -> Iterator[PastEvent]:
    rows = (
        Order.objects.select_related("customer", "shop")
        .annotate(arrived=Greatest("placed_at", "created_at"))
        .filter(arrived__gte=since, arrived__lte=until)
    )
    for order in rows.iterator(chunk_size=CHUNK):
        event_id = f"order:{order.pk}:created"
        event = FlowEvent(TriggerKind.NEW_ORDER, event_id, order.placed_at, order.customer, order, order.shop)
        yield PastEvent(event, order.arrived)


def _status_changes(since: datetime, until: datetime) -> Iterator[PastEvent]:
    rows = (
        OrderStatusChange.objects.filter(applied=True)
        .select_related("order__customer", "order__shop")
        .annotate(arrived=Greatest("changed_at", "recorded_at"))
        .filter(arrived__gte=since, arrived__lte=until)
    )
    for change in rows.iterator(chunk_size=CHUNK):
        order = change.order
        event = FlowEvent(
            TriggerKind.ORDER_STATUS_CHANGED, f"status-change:{change.pk}", change.changed_at,
            order.customer, order, order.shop, change.old_status or None, change.new_status,
        )  # fmt: skip
        yield PastEvent(event, change.arrived)


def _customers(since: datetime, until: datetime, registered: bool) -> Iterator[PastEvent]:
    # A customer is brand-wide; the shop that first knew them stands for the event's shop.
    identities = CustomerIdentity.objects.select_related("shop").order_by("created_at", "pk")
    rows = Customer.objects.prefetch_related(Prefetch("identities", queryset=identities))
    if registered:
        rows = rows.filter(registered_at__isnull=False).annotate(arrived=Greatest("registered_at", "created_at"))
    else:
        rows = rows.annotate(arrived=F("created_at"))
    for customer in rows.filter(arrived__gte=since, arrived__lte=until).iterator(chunk_size=CHUNK):
        first = next(iter(customer.identities.all()), None)
        trigger, what, occurred = (
            (TriggerKind.CUSTOMER_REGISTERED, "registered", customer.registered_at)
            if registered
            else (TriggerKind.NEW_CUSTOMER, "created", customer.created_at)
        )
        event = FlowEvent(trigger, f"customer:{customer.pk}:{what}", occurred, customer, None, first and first.shop)
        yield PastEvent(event, customer.arrived)


def _product_views(since: datetime, until: datetime) -> Iterator[PastEvent]:
    rows = (
        ProductView.objects.select_related("customer", "product__shop")
        .annotate(arrived=Greatest("viewed_at", "delivery__received_at"))  # GREATEST skips a NULL
        .filter(arrived__gte=since, arrived__lte=until)
    )
    for view in rows.iterator(chunk_size=CHUNK):
        event = FlowEvent(
            TriggerKind.PRODUCT_VIEWED, f"product-view:{view.pk}", view.viewed_at,
            view.customer, None, view.product.shop, product_id=view.product_id,
        )  # fmt: skip
        yield PastEvent(event, view.arrived)


READERS: dict[str, Callable[[datetime, datetime], Iterable[PastEvent]]] = {
    TriggerKind.NEW_ORDER: _orders,
    TriggerKind.ORDER_STATUS_CHANGED: _status_changes,
    TriggerKind.NEW_CUSTOMER: lambda since, until: _customers(since, until, registered=False),
    TriggerKind.CUSTOMER_REGISTERED: lambda since, until: _customers(since, until, registered=True),
    TriggerKind.PRODUCT_VIEWED: _product_views,
}


def past_events(flow: Flow, since: datetime, until: datetime, limit: int | None = None) -> list[PastEvent]:
    """The events a dry run of ``flow`` replays, in the order Herald learned of them: its
    trigger's (the first ``limit`` of them) and, for a flow that lets customers leave when
    they order, every order placed in the window."""
    kinds = {flow.trigger} | ({TriggerKind.NEW_ORDER} if flow.exit_on_order else set())
    events = [past for kind in kinds for past in READERS[kind](since, until)]
    events.sort(key=lambda p: (p.arrived_at, p.event.occurred_at, p.event.event_id))
    if limit is None:
        return events
    kept, taken = [], 0
    for past in events:
        if past.event.trigger == flow.trigger:
            if taken >= limit:
                continue
            taken += 1
        kept.append(past)
    return kept


# --- the simulation -------------------------------------------------------------------------


@dataclass(eq=False)
class SimulatedRun:
    """Quacks like ``FlowRun`` for the steps; never saved. ``pk`` is negative."""

    pk: int
    flow: Flow
    version: FlowVersion
    customer: Customer
    order: Order | None
    trigger_event: dict[str, Any]
    started_at: datetime
    status: str = RunStatus.ACTIVE
    index: int = 0
    step_key: str = ""
    resume_at: datetime | None = None
    deferrals: int = 0
    reached: set[str] = field(default_factory=set)

    @property
    def flow_id(self) -> int:
        return self.flow.pk

    @property
    def customer_id(self) -> int:
        return self.customer.pk

    @property
    def order_id(self) -> int | None:
        return self.order.pk if self.order is not None else None

    def describe(self) -> str:
        order = f", order {self.order.number or self.order.external_id}" if self.order is not None else ""
        return f"run {self.pk} (customer {self.customer.pk}{order})"


class Simulation:
    """One dry run: the events in order, runs waiting in a heap by when they resume, and
    the engine's entry rules and step outcomes applied in memory."""

    def __init__(
        self, *, flow: Flow, version: FlowVersion, since: datetime, until: datetime, show_rendered: int
    ) -> None:
        self.flow, self.until, self.show_rendered = flow, until, show_rendered
        self.go_live = flow.went_live_at if flow.status != FlowStatus.DRAFT and flow.went_live_at else since
        self.steps = version.ordered_steps()
        self.keys = [step.key for step in self.steps]
        self.report = DryRunReport(
            flow_id=flow.pk, flow_name=flow.name, version=version.number,
            version_state="draft" if version.published_at is None else "published",
            trigger=flow.trigger, since=since, until=until, notes=list(NOTES),
        )  # fmt: skip
        if flow.only_registered_after_live and self.go_live == since:
            self.report.notes.append(
                "The flow has not gone live: 'only customers registered after it went live' counts from the start "
                "of the dry run."
            )
        self.tallies = {s.key: StepTally(s.key, type(s).__name__, str(s._meta.verbose_name)) for s in self.steps}
        self.report.steps = list(self.tallies.values())
        self.version = version
        self.runs: list[SimulatedRun] = []
        self.due: list[tuple[datetime, int, SimulatedRun]] = []
        self.waiting: dict[int, set[SimulatedRun]] = defaultdict(set)
        self.taken: set[str] = set()
        self.last_entry: dict[int, datetime] = {}
        self.ids = itertools.count(1)
        self.sequence = itertools.count()

    def play(self, events: list[PastEvent], progress: Progress | None) -> DryRunReport:
        total = len(events)
        if progress is not None:
            progress(0, total)
        for done, past in enumerate(events, 1):
            self.resume_due(past.arrived_at)
            if past.event.trigger == self.flow.trigger:
                self.enter(past.event, past.arrived_at)
            if past.event.trigger == TriggerKind.NEW_ORDER and self.flow.exit_on_order:
                self.exit_on_order(past.event, past.arrived_at)
            if progress is not None:
                progress(done, total)
        self.resume_due(self.until)
        return self.summarise()

    # entry: the engine's rules (start_runs, _dedupe_key), held in memory

    def enter(self, event: FlowEvent, now: datetime) -> None:
        report = self.report
        report.events_considered += 1
        if not _matches(self.flow, event):
            return
        report.events_matched += 1
        if event.customer is None:
            report.refused["no_customer"] += 1
            return
        if now - event.occurred_at > timedelta(days=self.flow.relevance_days):
            report.refused["stale_event"] += 1
            return
        if self.flow.only_registered_after_live:
            registered = event.customer.registered_at
            if registered is None or registered < self.go_live:
                report.refused["registered_before_live"] += 1
                return
        key, refused = self.entry_key(event, now)
        if key is None:
            report.refused[refused] += 1
            return
        if key in self.taken:
            report.refused["already_entered"] += 1
            return
        self.taken.add(key)
        run = SimulatedRun(
            pk=-next(self.ids), flow=self.flow, version=self.version, customer=event.customer, order=event.order,
            trigger_event=event.as_json(), started_at=now,
        )  # fmt: skip
        self.runs.append(run)
        report.runs_started += 1
        self.advance(run, now)

    def entry_key(self, event: FlowEvent, now: datetime) -> tuple[str | None, str]:
        assert event.customer is not None
        rule = self.flow.entry_rule
        if rule == EntryRule.ONCE_PER_CUSTOMER:
            return f"customer:{event.customer.pk}", ""
        if rule == EntryRule.ONCE_PER_ORDER:
            return (f"order:{event.order.pk}", "") if event.order is not None else (None, "no_order")
        if rule == EntryRule.NOT_WITHIN_DAYS:
            last = self.last_entry.get(event.customer.pk)
            if last is not None and last > now - timedelta(days=self.flow.entry_days):
                return None, "entered_recently"
            self.last_entry[event.customer.pk] = now
        return f"event:{event.event_id}", ""

    def exit_on_order(self, event: FlowEvent, now: datetime) -> None:
        """The engine's exit_runs_on_order: waiting runs started before the order leave."""
        if event.customer is None or event.order is None:
            return
        for run in list(self.waiting[event.customer.pk]):
            if run.started_at < event.order.placed_at and run.order_id != event.order.pk:
                self.waiting[event.customer.pk].discard(run)
                run.status = RunStatus.EXITED
                self.report.exits["placed_order"] += 1

    # advancing: the engine's advance_run and _apply, with the run in memory

    def resume_due(self, moment: datetime) -> None:
        while self.due and self.due[0][0] <= moment:
            at, _, run = heapq.heappop(self.due)
            if run.status == RunStatus.WAITING and run.resume_at == at:
                self.waiting[run.customer.pk].discard(run)
                self.advance(run, at)

    def advance(self, run: SimulatedRun, now: datetime) -> None:
        run.status, run.resume_at = RunStatus.ACTIVE, None
        for _ in range(MAX_STEPS_PER_ADVANCE):
            if run.index >= len(self.steps):
                run.status = RunStatus.COMPLETED
                return
            step = self.steps[run.index]
            if step.key not in run.reached:
                run.reached.add(step.key)
                self.tallies[step.key].reached += 1
            try:
                # A savepoint per step, as the engine has: a failed query leaves the rest usable.
                with transaction.atomic(), clock.frozen_at(now):
                    result = self.execute(step, run, now)
                    self.apply(run, step, result, now)
            except Exception as exc:
                self.fail(run, step, f"{type(exc).__name__}: {exc}")
                return
            if run.status != RunStatus.ACTIVE:
                return
        self.fail(run, self.steps[min(run.index, len(self.steps) - 1)], "too many steps in one advance")

    @staticmethod
    def execute(step: Any, run: SimulatedRun, now: datetime) -> StepResult:
        # Any step that can act takes dry_run; one that cannot has nothing to leave out.
        if "dry_run" in inspect.signature(step.execute).parameters:
            return step.execute(run, now, dry_run=True)
        return step.execute(run, now)

    def apply(self, run: SimulatedRun, step: Any, result: StepResult, now: datetime) -> None:
        index = run.index
        if result.outcome in ("next", "wait"):
            index += 1
        elif result.outcome == "goto":
            target = self.keys.index(result.goto) if result.goto in self.keys else -1
            if target <= index:
                raise ValueError(f"Step {step.key} jumps to {result.goto!r}, which is not a later step.")
            index = target
        elif result.outcome not in ("end", "exit", "defer"):
            raise ValueError(f"Unknown step outcome {result.outcome!r}.")
        if result.outcome in ("wait", "defer") and result.resume_at is None:
            raise ValueError(f"Step {step.key} asked to wait but gave no time.")
        self.tally(run, step, result, now)
        if result.outcome in ("end", "exit"):
            run.status = RunStatus.COMPLETED if result.outcome == "end" else RunStatus.EXITED
            if result.outcome == "exit":
                self.report.exits[result.reason] += 1
            return
        run.index = index
        run.step_key = self.keys[index] if index < len(self.keys) else ""
        if result.outcome == "defer":
            run.deferrals += 1
            if run.deferrals > MAX_DEFERRALS:
                raise RuntimeError(f"the send was deferred more than {MAX_DEFERRALS} times")
        if result.outcome in ("wait", "defer"):
            assert result.resume_at is not None
            self.wait(run, result.resume_at)

    def wait(self, run: SimulatedRun, until: datetime) -> None:
        run.status, run.resume_at = RunStatus.WAITING, until
        self.waiting[run.customer.pk].add(run)
        if until <= self.until:
            heapq.heappush(self.due, (until, next(self.sequence), run))

    def tally(self, run: SimulatedRun, step: Any, result: StepResult, now: datetime) -> None:
        tally = self.tallies[step.key]
        tally.outcomes[result.reason] += 1
        send = result.send
        if result.reason == "send_blocked":
            tally.blocked[(send.reason if send is not None else "") or result.detail or "unknown"] += 1
        rendered = getattr(send, "rendered", None)
        if result.reason == "sent" and rendered is not None and len(self.report.rendered) < self.show_rendered:
            text = rendered.text or strip_tags(rendered.html)
            self.report.rendered.append(
                RenderedMessage(
                    run=run.pk, step=step.key, at=now, campaign=send.campaign.name,
                    variant=send.variant.name if send.variant is not None else "", channel=send.channel,
                    recipient=send.address, customer_id=run.customer.pk, subject=rendered.subject,
                    text=" ".join(text.split())[:TEXT_EXCERPT],
                )
            )  # fmt: skip

    def fail(self, run: SimulatedRun, step: Any, summary: str) -> None:
        run.status = RunStatus.FAILED
        self.tallies[step.key].outcomes["error"] += 1
        if len(self.report.errors) < KEPT_LINES:
            self.report.errors.append(f"{run.describe()} failed at {step.key}: {summary[:300]}")

    def summarise(self) -> DryRunReport:
        report = self.report
        for run in self.runs:
            report.runs[run.status] += 1
            if run.status != RunStatus.WAITING:
                continue
            where = run.step_key or "the end"
            if run.step_key:
                self.tallies[run.step_key].waiting += 1
            if len(report.waiting) < KEPT_LINES:
                assert run.resume_at is not None
                report.waiting.append(f"{run.describe()}: waiting at {where} until {run.resume_at:%Y-%m-%d %H:%M} UTC")
        return report


def _read_only() -> None:
    """PostgreSQL refuses every write from here to the end of the transaction (or of the
    savepoint, when the caller already holds a transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION READ ONLY")


def dry_run(
    *,
    flow: Flow,
    since: datetime,
    until: datetime | None = None,
    limit: int | None = None,
    show_rendered: int = 3,
    progress: Progress | None = None,
) -> DryRunReport:
    """What ``flow`` would have done with the events Herald learned of between ``since``
    and ``until`` (default and at most: now), writing nothing. ``limit`` keeps the first N events of
    the trigger; ``show_rendered`` how many rendered messages the report keeps;
    ``progress(done, total)`` is called as events are replayed.

    Raises ``ValueError`` (in words for staff) when the window is empty or the flow has
    no version to run."""
    now = clock.now()
    until = min(until or now, now)  # the future has no events, and conditions read today's data
    if since >= until:
        raise ValueError(
            f"The dry run would start ({since:%Y-%m-%d %H:%M} UTC) after it ends ({until:%Y-%m-%d %H:%M} UTC)."
        )
    version = flow.draft_version or flow.current_version
    if version is None:
        raise ValueError(f"The flow {flow.name!r} has no steps yet: add some before a dry run.")
    with transaction.atomic():
        _read_only()
        try:
            simulation = Simulation(flow=flow, version=version, since=since, until=until, show_rendered=show_rendered)
            return simulation.play(past_events(flow, since, until, limit), progress)
        finally:
            transaction.set_rollback(True)
