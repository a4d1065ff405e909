"""Runs with their step logs (the customer's journey), and the events that started nothing.

Both are evidence of what the engine did, so nothing here adds, edits or deletes them.
The one write is retrying failed runs, through ``flows.engine.retry_runs``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from flows import clock
from flows.admin.display import PRE, badge, link, plural, pretty_json
from flows.admin.editor import can_operate
from flows.admin.steps import STEP_TYPE_NAMES
from flows.engine import retry_runs
from flows.models import FlowRun, RunStatus, SkippedEntry, StepLog

SEND_COLOURS = {"sent": "#15803d", "blocked": "#b91c1c", "deferred": "#b45309"}


class EvidenceAdmin(admin.ModelAdmin):
    """What the engine recorded: seen, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepLogInline(admin.TabularInline):
    model = StepLog
    verbose_name = "step executed"
    verbose_name_plural = "journey (one row per step executed)"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["executed_at", "step_key", "step", "outcome", "reason", "detail", "send_verdict"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StepLog]:
        return super().get_queryset(request).select_related("send__campaign", "send__message")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("flows.view_flowrun") or request.user.has_perm("flows.view_steplog")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Step type")
    def step(self, log: StepLog) -> str:
        return STEP_TYPE_NAMES.get(log.step_type, log.step_type)

    @admin.display(description="Send")
    def send_verdict(self, log: StepLog) -> SafeString | str:
        """Marketing's send record decides why a message went or did not; shown, not copied."""
        send = log.send
        if send is None:
            return "-"
        verdict = send.get_decision_display() + (f": {send.get_reason_display()}" if send.reason else "")
        parts = [
            format_html(
                '<span style="color:{};font-weight:bold">{}</span> {}',
                SEND_COLOURS.get(send.decision, "#374151"),
                verdict,
                link(send, f"send #{send.pk}"),
            ),
            format_html("{}", send.campaign.name),
        ]
        if send.detail:
            parts.append(format_html('<span class="help">{}</span>', send.detail))
        if send.message is not None:
            parts.append(link(send.message, f"ledger message #{send.message.pk} ({send.message.status})"))
        return format_html("<br>".join(["{}"] * len(parts)), *parts)


@admin.register(FlowRun)
class FlowRunAdmin(EvidenceAdmin):
    list_display = ["id", "flow", "customer", "order", "status_badge", "step_key", "resume_at", "started_at"]
    list_display_links = ["id"]
    list_filter = ["status", ("flow", admin.RelatedOnlyFieldListFilter), ("version", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["customer__email", "order__number"]
    list_select_related = ["flow", "customer", "order"]
    date_hierarchy = "started_at"
    ordering = ["-started_at", "-id"]
    actions = ["retry_selected"]
    inlines = [StepLogInline]
    fieldsets = [
        (None, {"fields": [("flow", "version_link"), ("customer", "order"), "status_badge"]}),
        ("Where it stands", {"fields": ["next_step", "resume_at", "exit_reason", "error_text"]}),
        ("Trigger event", {"fields": ["event_json", "dedupe_key"]}),
        ("Times", {"fields": [("started_at", "finished_at"), ("lease_until", "updated_at")]}),
    ]
    readonly_fields = ["version_link", "status_badge", "next_step", "error_text", "event_json"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[FlowRun]:
        return super().get_queryset(request).select_related("flow", "version", "customer", "order")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return can_operate(request)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: FlowRun) -> SafeString:
        shown = badge(run.status, run.get_status_display())
        return format_html("{} <small>{}</small>", shown, run.exit_reason) if run.exit_reason else shown

    @admin.display(description="Version")
    def version_link(self, run: FlowRun) -> SafeString | str:
        return link(run.version, f"v{run.version.number}")

    @admin.display(description="Next step")
    def next_step(self, run: FlowRun) -> str:
        if run.status in (RunStatus.COMPLETED, RunStatus.EXITED):
            return "None: the run has ended."
        if not run.step_key:
            return "The first step."
        step = next((s for s in run.version.ordered_steps() if s.key == run.step_key), None)
        if step is None:
            return f"{run.step_key} (no longer in v{run.version.number})"
        return f"{run.step_key}: {step}"

    @admin.display(description="Error")
    def error_text(self, run: FlowRun) -> SafeString | str:
        return format_html('<pre style="{}">{}</pre>', PRE, run.error) if run.error else "-"

    @admin.display(description="Event")
    def event_json(self, run: FlowRun) -> SafeString:
        return pretty_json(run.trigger_event)

    @admin.action(description="Retry selected failed runs", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        retried = retry_runs(run_ids=ids, now=clock.now())
        if retried:
            text = f"Queued {plural(retried, 'failed run')} to run again from the step that failed."
            self.message_user(request, text, messages.SUCCESS)
        if len(ids) > retried:
            left = len(ids) - retried
            was = "it was" if left == 1 else "they were"
            text = f"{plural(left, 'run')} left as {was}: only failed runs are retried."
            self.message_user(request, text, messages.WARNING)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_retry": self.has_retry_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        retry = self.admin_site.admin_view(require_POST(self.retry_one))
        return [path("<int:run_id>/retry/", retry, name="flows_flowrun_retry"), *super().get_urls()]

    def retry_one(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_retry_permission(request):
            raise PermissionDenied
        run = get_object_or_404(FlowRun.objects.only("pk"), pk=run_id)
        self.retry_selected(request, FlowRun.objects.filter(pk=run.pk))
        return HttpResponseRedirect(reverse("admin:flows_flowrun_change", args=[run.pk]))


@admin.register(SkippedEntry)
class SkippedEntryAdmin(EvidenceAdmin):
    """Why an event that matched a flow's trigger started no run."""

    list_display = ["created_at", "flow", "event_id", "reason", "detail", "customer", "order", "occurred_at"]
    list_filter = ["reason", ("flow", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["event_id", "customer__email", "order__number", "detail"]
    list_select_related = ["flow", "customer", "order"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    fields = ["flow", "event_id", "reason", "detail", "customer", "order", "occurred_at", "created_at"]
