"""``manage.py flows dryrun <flow> --since 30d``: what a flow would have done with the
events of a past window, written nowhere (see ``flows.dryrun``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from collections.abc import Collection
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from flows import clock
from flows.dryrun import DryRunReport, dry_run
from flows.models import Flow, TriggerKind

BAR_WIDTH = 30
RELATIVE = re.compile(r"(\d+)\s*([dh])")
MOMENT_HELP = "30d (days ago), 12h (hours ago), or an ISO date or time such as 2026-10-01 (UTC unless it says)"


def parse_moment(value: str, now: datetime) -> datetime:
    """``30d``, ``12h`` (before ``now``) or an ISO date or datetime; naive means UTC."""
    relative = RELATIVE.fullmatch(value.strip().lower())
    if relative:
        amount, unit = int(relative[1]), relative[2]
        return now - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.combine(day, time()) if day is not None else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"Cannot read {value!r} as a moment. Give {MOMENT_HELP}.")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def find_flow(reference: str) -> Flow:
    """The flow with this id, else with exactly this name."""
    if reference.isdigit():
        flow = Flow.objects.filter(pk=int(reference)).first()
        if flow is not None:
            return flow
    named = list(Flow.objects.filter(name=reference))
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(str(flow.pk) for flow in named)
        raise CommandError(f"Several flows are named {reference!r} (ids {ids}); give the id instead.")
    known = ", ".join(f"{flow.pk}: {flow.name}" for flow in Flow.objects.order_by("pk")[:20]) or "none yet"
    raise CommandError(f"No flow has the id or name {reference!r}. Flows: {known}.")


def table(rows: list[tuple[str, ...]], right: Collection[int] = ()) -> list[str]:
    """Rows as aligned text; columns in ``right`` align right (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def step_rows(report: DryRunReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("STEP", "TYPE", "REACHED", "OUTCOME", "COUNT")]
    for step in report.steps:
        outcomes: list[tuple[str, int]] = []
        for reason, count in step.outcomes.most_common():
            outcomes.append((reason, count))
            if reason == "send_blocked":
                outcomes += [(f"  {why}", n) for why, n in step.blocked.most_common()]
        if step.waiting:
            outcomes.append(("still waiting here", step.waiting))
        first, *rest = outcomes or [("-", 0)]
        rows.append((step.key, step.kind, str(step.reached), first[0], str(first[1]) if outcomes else ""))
        rows += [("", "", "", reason, str(count)) for reason, count in rest]
    return rows


def render_text(report: DryRunReport) -> list[str]:
    trigger = TriggerKind(report.trigger).label
    lines = [
        f"Dry run of {report.flow_name!r} (version {report.version}, {report.version_state}), trigger: {trigger}",
        f"Events from {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC. Nothing was written.",
        "",
        *table(
            [
                ("Events considered", str(report.events_considered)),
                ("  matching the flow's filters", str(report.events_matched)),
                ("Runs that would start", str(report.runs_started)),
                ("Messages that would be sent", str(report.would_send)),
            ],
            right={1},
        ),
    ]
    if report.refused:
        refused = [("ENTRY REFUSED", "EVENTS"), *((reason, str(n)) for reason, n in report.refused.most_common())]
        lines += ["", *table(refused, right={1})]
    lines += ["", *table(step_rows(report), right={2, 4})]
    runs = report.runs
    lines += [
        "",
        f"Runs: {runs['completed']} completed, {runs['exited']} exited, {runs['failed']} failed, "
        f"{runs['waiting']} still waiting at {report.until:%Y-%m-%d %H:%M} UTC",
    ]
    lines += [f"  exited ({reason}): {count}" for reason, count in report.exits.most_common()]
    lines += [f"  {line}" for line in report.waiting]
    lines += [f"  {line}" for line in report.errors]
    if report.rendered:
        lines += ["", f"First {len(report.rendered)} message(s) that would be sent:"]
        for message in report.rendered:
            lines += [
                "",
                f"  {message.channel} to {message.recipient} at {message.at:%Y-%m-%d %H:%M} UTC "
                f"({message.campaign} / {message.variant}, step {message.step}, run {message.run})",
            ]
            if message.subject:
                lines.append(f"  Subject: {message.subject}")
            lines.append(f"  {message.text}")
    if report.refused.get("stale_event"):
        lines += ["", "stale_event: Herald learned of the event longer after it happened than the flow's relevance "
                      "window (imported history, say); the engine would not start a run for it either."]  # fmt: skip
    lines += ["", "Notes:", *(f"- {note}" for note in report.notes)]
    return lines


class Command(BaseCommand):
    help = "Work with flows: 'dryrun' shows what a flow would have done with past events, writing nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{dryrun}")
        dry = actions.add_parser(
            "dryrun", help="Run a flow over past events with a simulated clock and report what would happen."
        )
        dry.add_argument("flow", help="The flow's id or exact name.")
        dry.add_argument("--since", required=True, help=f"Start of the window: {MOMENT_HELP}.")
        dry.add_argument("--until", help="End of the window, in the same forms (default: now).")
        dry.add_argument("--limit", type=int, help="Replay only the first N events of the flow's trigger.")
        dry.add_argument(
            "--show-rendered", type=int, default=3, metavar="N", help="Show the first N messages rendered (default 3)."
        )
        dry.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        flow = find_flow(options["flow"])
        self._drawn: int | None = None
        now = clock.now()
        since = parse_moment(options["since"], now)
        until = parse_moment(options["until"], now) if options["until"] else now
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit needs a number of events of at least 1.")
        try:
            report = dry_run(
                flow=flow,
                since=since,
                until=until,
                limit=options["limit"],
                show_rendered=max(0, options["show_rendered"]),
                progress=self.draw_progress,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report.as_json(), indent=2))
        else:
            self.stdout.write("\n".join(render_text(report)))

    def draw_progress(self, done: int, total: int) -> None:
        percent = 100 if total == 0 else 100 * done // total
        # Redrawing for each of thousands of events would cost more than the replay.
        if percent == self._drawn and done < total:
            return
        self._drawn = percent
        filled = BAR_WIDTH * percent // 100
        bar = f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}% {done}/{total} events"
        self.stderr.write(bar, style_func=str, ending="\n" if done >= total else "")
        self.stderr.flush()
