"""Staff actions on flows: versions, activation with its checks, pause and resume."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from flows import clock
from flows.engine import END
from flows.models import (
    EntryRule,
    Flow,
    FlowRun,
    FlowStatus,
    FlowVersion,
    RunStatus,
    SendCampaignStep,
    SplitStep,
    StatusRouterStep,
    StepLog,
)
from flows.models.steps import Condition


def draft_version(*, flow: Flow) -> FlowVersion:
    """The version staff edit: the existing draft, or a copy of the current version."""
    with transaction.atomic():
        Flow.objects.select_for_update().get(pk=flow.pk)
        draft = flow.draft_version
        if draft is not None:
            return draft
        current = flow.current_version
        number = (current.number + 1) if current else 1
        draft = FlowVersion.objects.create(flow=flow, number=number)
        if current is not None:
            for step in current.ordered_steps():
                step.copy_to(draft)
        return draft


def check_flow(flow: Flow, version: FlowVersion | None = None) -> list[str]:
    """Why the flow cannot go live, in words; empty when it can."""
    problems = []
    version = version or flow.draft_version or flow.current_version
    if not flow.trigger:
        problems.append("The flow has no trigger.")
    if flow.entry_rule == EntryRule.ONCE_PER_ORDER and flow.trigger not in ("new_order", "order_status_changed"):
        problems.append("'Once per order' needs an order trigger (New order or Order status changed).")
    steps = version.ordered_steps() if version else []
    if not steps:
        problems.append("The flow has no steps.")
    keys = [s.key for s in steps]
    for index, step in enumerate(steps):
        targets = []
        if isinstance(step, Condition) and step.otherwise_goto:
            targets.append(step.otherwise_goto)
        if isinstance(step, SplitStep):
            targets += [str(p.get("goto", "")) for p in step.paths]
        if isinstance(step, StatusRouterStep):
            targets += [str(t) for t in step.routes.values()] + ([step.otherwise_goto] if step.otherwise_goto else [])
        for target in targets:
            if target not in keys[index + 1 :]:
                problems.append(f"Step {step.key!r} jumps to {target!r}, which is not a later step of this flow.")
        if isinstance(step, SendCampaignStep):
            from marketing.compliance import check_campaign

            campaign = step.campaign
            if campaign.status != campaign.Status.ACTIVE:
                problems.append(f"Step {step.key!r} sends {campaign.name!r}, which is not active.")
            for problem in check_campaign(campaign):
                if problem.level == "error":
                    problems.append(f"Step {step.key!r}, campaign {campaign.name!r}: {problem.message}")
    return problems


def publish_version(*, flow: Flow, move_waiting_runs: bool, now: datetime | None = None) -> FlowVersion:
    """Make the draft the version new runs start on. With ``move_waiting_runs``, waiting
    runs move to it: to the step with the same key, or, if that step was deleted, to the
    next step after their old position that still exists; never back to a step done."""
    now = now or clock.now()
    with transaction.atomic():
        draft = flow.draft_version
        if draft is None:
            raise ValueError("There is no draft version to publish.")
        problems = check_flow(flow, draft)
        if problems and flow.status == FlowStatus.LIVE:
            raise ValueError(" ".join(problems))
        draft.published_at = now
        draft.save(update_fields=["published_at"])
        if move_waiting_runs:
            move_runs(flow=flow, to=draft, now=now)
    return draft


def _moved_step_key(old_keys: list[str], current: str, new_keys: list[str]) -> str | None:
    """Where a run standing before ``current`` (in the old version) resumes in the new one:
    "" for the end, None when it should stay."""
    if not current or current == END:
        return None
    if current in new_keys:
        return current
    position = old_keys.index(current) if current in old_keys else len(old_keys)
    for key in old_keys[position + 1 :]:
        if key in new_keys:
            return key
    return ""


def move_runs(*, flow: Flow, to: FlowVersion, now: datetime) -> int:
    new_keys = [s.key for s in to.ordered_steps()]
    moved = 0
    runs = FlowRun.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        flow=flow, status=RunStatus.WAITING
    ).exclude(version=to)
    for run in runs.select_related("version"):
        old_keys = [s.key for s in run.version.ordered_steps()]
        target = _moved_step_key(old_keys, run.step_key, new_keys)
        if target is None:
            continue
        target = target or END
        StepLog.objects.create(
            run=run, step_key=run.step_key, step_type="version", outcome="moved",
            reason=f"moved_to_v{to.number}", detail=f"resumes at {target if target != END else 'the end'}", executed_at=now,
        )  # fmt: skip
        run.version = to
        run.step_key = target
        run.save(update_fields=["version", "step_key", "updated_at"])
        moved += 1
    return moved


def activate_flow(*, flow: Flow, now: datetime | None = None) -> list[str]:
    """Go live (publishing the draft if there is one). Returns the problems that stop it."""
    now = now or clock.now()
    problems = check_flow(flow)
    if problems:
        return problems
    with transaction.atomic():
        if flow.draft_version is not None:
            publish_version(flow=flow, move_waiting_runs=False, now=now)
        flow.status = FlowStatus.LIVE
        if flow.went_live_at is None:
            flow.went_live_at = now
        flow.save(update_fields=["status", "went_live_at", "updated_at"])
    return []


def pause_flow(*, flow: Flow) -> None:
    """Paused: no new runs start and waiting runs hold; resuming picks them up where they
    stand (a wait that ended during the pause continues at once)."""
    Flow.objects.filter(pk=flow.pk, status=FlowStatus.LIVE).update(status=FlowStatus.PAUSED)


def resume_flow(*, flow: Flow) -> None:
    Flow.objects.filter(pk=flow.pk, status=FlowStatus.PAUSED).update(status=FlowStatus.LIVE)
