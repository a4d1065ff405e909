"""Flows (their settings, activation, recipes) and flow versions (the step editor)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST
from polymorphic.admin import PolymorphicInlineSupportMixin

from flows import clock
from flows.actions import activate_flow, check_flow, draft_version, pause_flow, publish_version, resume_flow
from flows.admin.display import badge, changelist_url, link, plural
from flows.admin.forms import FlowForm
from flows.admin.steps import StepInline, is_draft, steps_table
from flows.models import Flow, FlowRun, FlowStatus, FlowVersion, RunStatus, SkippedEntry, TriggerKind
from orders.models import Shop

WHO_ENTERS_NOTE = (
    "The entry rule is enforced by the database: a replayed or repeated event never starts a second run the rule "
    "forbids. Events that happened longer ago than the relevance window start nothing."
)


def settings_fieldsets(flow: Flow | None) -> list[Any]:
    """The flow's settings; the status boxes fold away unless the trigger uses them."""
    statuses_used = flow is not None and (
        flow.trigger == TriggerKind.ORDER_STATUS_CHANGED or bool(flow.from_statuses or flow.to_statuses)
    )
    return [
        ("Trigger", {"fields": ["trigger", "shop"]}),
        (
            "Which status changes (for the 'Order status changed' trigger)",
            {"fields": ["from_statuses", "to_statuses"], "classes": [] if statuses_used else ["collapse"]},
        ),
        ("Who enters", {"fields": ["entry_rule", "entry_days", "relevance_days", "only_registered_after_live"],
                        "description": WHO_ENTERS_NOTE}),
        ("Leaving the flow", {"fields": ["exit_on_order"]}),
    ]  # fmt: skip


def can_operate(request: HttpRequest) -> bool:
    """Activating, pausing, resuming, editing steps and publishing all change a flow."""
    return request.user.has_perm("flows.change_flow")


def can_see_flows(request: HttpRequest) -> bool:
    return request.user.has_perm("flows.view_flow") or request.user.has_perm("flows.change_flow")


def load_recipes() -> ModuleType | None:
    """The recipes module, or None while it does not exist."""
    try:
        return importlib.import_module("flows.recipes")
    except ModuleNotFoundError as exc:
        if exc.name != "flows.recipes":
            raise
        return None


def open_step_editor(request: HttpRequest, flow: Flow) -> HttpResponse:
    """Go to the flow's draft, starting one (a copy of the published steps) if needed."""
    had_draft = flow.draft_version is not None
    current = flow.current_version
    draft = draft_version(flow=flow)
    if not had_draft:
        note = f"Started draft v{draft.number}"
        if current is not None:
            note += f" as a copy of v{current.number}. Runs keep using v{current.number} until you publish the draft"
        messages.success(request, note + ".")
    return HttpResponseRedirect(reverse("admin:flows_flowversion_change", args=[draft.pk]))


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    form = FlowForm
    list_display = ["name", "trigger", "status_badge", "version_column", "active_runs", "waiting_runs"]
    list_display += ["completed_runs", "went_live_at"]
    list_filter = ["status", "trigger"]
    search_fields = ["name"]
    readonly_fields = ["status_badge", "went_live_at", "recipe", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flow]:
        def number(published: bool) -> Subquery:
            versions = FlowVersion.objects.filter(flow=OuterRef("pk"), published_at__isnull=not published)
            return Subquery(versions.order_by("-number").values("number")[:1])

        # One query for the whole list: run counts by a grouped join, version numbers by subqueries
        # (a second join would multiply the run counts).
        runs = {f"runs_{status}": Count("runs", filter=Q(runs__status=status)) for status in RunStatus.values}
        return super().get_queryset(request).annotate(current_number=number(True), draft_number=number(False), **runs)

    def get_fieldsets(self, request: HttpRequest, obj: Flow | None = None) -> list[Any]:
        if obj is None:
            return [(None, {"fields": ["name"]}), *settings_fieldsets(None)]
        record_fields = ["went_live_at", "recipe", ("created_at", "updated_at")]
        record = ("Record", {"fields": record_fields, "classes": ["collapse"]})
        return [(None, {"fields": ["name"]}), *settings_fieldsets(obj), record]

    # --- columns ---
    @admin.display(description="Status", ordering="status")
    def status_badge(self, flow: Flow) -> SafeString:
        return badge(flow.status, flow.get_status_display())

    @admin.display(description="Version", ordering="current_number")
    def version_column(self, flow: Flow) -> str:
        published, draft = flow.current_number, flow.draft_number  # type: ignore[attr-defined]
        current = f"v{published}" if published else "none published"
        return format_html("{} <small>(draft v{} open)</small>", current, draft) if draft else current

    def _runs(self, flow: Flow, status: str) -> SafeString:
        count = getattr(flow, f"runs_{status}")
        url = changelist_url(FlowRun, flow__id__exact=flow.pk, status__exact=status)
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="Active runs", ordering="runs_active")
    def active_runs(self, flow: Flow) -> SafeString:
        return self._runs(flow, RunStatus.ACTIVE)

    @admin.display(description="Waiting", ordering="runs_waiting")
    def waiting_runs(self, flow: Flow) -> SafeString:
        return self._runs(flow, RunStatus.WAITING)

    @admin.display(description="Completed", ordering="runs_completed")
    def completed_runs(self, flow: Flow) -> SafeString:
        return self._runs(flow, RunStatus.COMPLETED)

    # --- pages ---
    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        recipes = load_recipes()
        context = {**(extra_context or {})}
        if recipes is not None:
            context["recipes"] = [
                {"slug": slug, "name": recipe.name, "description": recipe.description}
                for slug, recipe in recipes.RECIPES.items()
            ]
            context["shops"] = list(Shop.objects.filter(is_active=True).order_by("name"))
        return super().changelist_view(request, context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        flow = self.get_object(request, object_id)
        context = {**(extra_context or {})}
        if flow is not None:
            context.update(self._flow_context(request, flow))
        return super().change_view(request, object_id, form_url, context)

    def _flow_context(self, request: HttpRequest, flow: Flow) -> dict[str, Any]:
        draft, current = flow.draft_version, flow.current_version
        run_counts = []
        for status, label in RunStatus.choices:
            url = changelist_url(FlowRun, flow__id__exact=flow.pk, status__exact=status)
            run_counts.append((label, getattr(flow, f"runs_{status}"), url))
        return {
            "status": badge(flow.status, flow.get_status_display()),
            "can_operate": can_operate(request),
            "draft": draft,
            "current": current,
            "next_number": (current.number + 1) if current else 1,
            "draft_steps": steps_table(draft, "No draft is open: the published steps are the ones in use."),
            "current_steps": steps_table(current, "Activating the flow publishes its draft as v1."),
            "problems": check_flow(flow) if (draft is not None or flow.status != FlowStatus.LIVE) else [],
            "run_counts": run_counts,
            "skipped_count": SkippedEntry.objects.filter(flow=flow).count(),
            "skipped_url": changelist_url(SkippedEntry, flow__id__exact=flow.pk),
            "versions": flow.versions.annotate(run_count=Count("runs")).order_by("-number"),
        }

    def response_add(self, request: HttpRequest, obj: Flow, post_url_continue: str | None = None) -> HttpResponse:
        if "_edit_steps" in request.POST:
            self.message_user(request, f"Saved '{obj}'. Now add its steps.", messages.SUCCESS)
            return open_step_editor(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Flow) -> HttpResponse:
        if "_edit_steps" in request.POST:
            self.message_user(request, f"Saved the settings of '{obj}'.", messages.SUCCESS)
            return open_step_editor(request, obj)
        return super().response_change(request, obj)

    # --- buttons ---
    def get_urls(self) -> list[Any]:
        def post(view: Any) -> Any:
            return self.admin_site.admin_view(require_POST(view))

        return [
            path("<int:flow_id>/activate/", post(self.activate_view), name="flows_flow_activate"),
            path("<int:flow_id>/pause/", post(self.pause_view), name="flows_flow_pause"),
            path("<int:flow_id>/resume/", post(self.resume_view), name="flows_flow_resume"),
            path("<int:flow_id>/edit-steps/", post(self.edit_steps_view), name="flows_flow_edit_steps"),
            path("from-recipe/", post(self.recipe_view), name="flows_flow_recipe"),
            *super().get_urls(),
        ]

    def _flow_for_button(self, request: HttpRequest, flow_id: int) -> Flow:
        if not can_operate(request):
            raise PermissionDenied
        return get_object_or_404(Flow, pk=flow_id)

    def _back(self, flow: Flow) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:flows_flow_change", args=[flow.pk]))

    def activate_view(self, request: HttpRequest, flow_id: int) -> HttpResponse:
        flow = self._flow_for_button(request, flow_id)
        if flow.status == FlowStatus.LIVE:
            self.message_user(request, f"'{flow}' is already live.", messages.WARNING)
            return self._back(flow)
        problems = activate_flow(flow=flow, now=clock.now())
        if problems:
            self.message_user(request, f"'{flow}' cannot go live yet:", messages.ERROR)
            for problem in problems:
                self.message_user(request, problem, messages.ERROR)
            return self._back(flow)
        version = flow.current_version
        number = f" on v{version.number}" if version else ""
        self.message_user(request, f"'{flow}' is live{number}: matching events now start runs.", messages.SUCCESS)
        return self._back(flow)

    def pause_view(self, request: HttpRequest, flow_id: int) -> HttpResponse:
        flow = self._flow_for_button(request, flow_id)
        if flow.status != FlowStatus.LIVE:
            self.message_user(request, f"'{flow}' is not live: there is nothing to pause.", messages.WARNING)
            return self._back(flow)
        pause_flow(flow=flow)
        text = f"'{flow}' is paused: no new runs start, and waiting runs hold where they are until you resume it."
        self.message_user(request, text, messages.SUCCESS)
        return self._back(flow)

    def resume_view(self, request: HttpRequest, flow_id: int) -> HttpResponse:
        flow = self._flow_for_button(request, flow_id)
        if flow.status != FlowStatus.PAUSED:
            self.message_user(request, f"'{flow}' is not paused: there is nothing to resume.", messages.WARNING)
            return self._back(flow)
        resume_flow(flow=flow)
        text = f"'{flow}' is live again: runs whose wait ended during the pause continue now."
        self.message_user(request, text, messages.SUCCESS)
        return self._back(flow)

    def edit_steps_view(self, request: HttpRequest, flow_id: int) -> HttpResponse:
        return open_step_editor(request, self._flow_for_button(request, flow_id))

    def recipe_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        recipes = load_recipes()
        slug = request.POST.get("recipe", "")
        if recipes is None or slug not in recipes.RECIPES:
            raise Http404(f"There is no recipe {slug!r}.")
        shop_id = request.POST.get("shop", "")
        shop = get_object_or_404(Shop, pk=shop_id) if shop_id.isdigit() else None
        try:
            flow = recipes.create_from_recipe(slug=slug, shop=shop, now=clock.now())
        except ValueError as exc:
            self.message_user(request, f"Could not start from '{recipes.RECIPES[slug].name}': {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:flows_flow_changelist"))
        text = (
            f"Created '{flow}' from the recipe '{recipes.RECIPES[slug].name}'. It is a draft: check its settings, "
            "steps and campaigns, then activate it."
        )
        self.message_user(request, text, messages.SUCCESS)
        return self._back(flow)


# --- versions: the step editor ------------------------------------------------------


class PublishedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("draft", "Drafts"), ("published", "Published")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[FlowVersion]) -> QuerySet[FlowVersion]:
        if self.value() not in ("draft", "published"):
            return queryset
        return queryset.filter(published_at__isnull=self.value() == "draft")


@admin.register(FlowVersion)
class FlowVersionAdmin(PolymorphicInlineSupportMixin, admin.ModelAdmin):
    """A draft version's page is the step editor; a published version is read-only.
    Versions are made by "Edit steps" on the flow, never added here."""

    list_display = ["__str__", "flow_link", "number", "state", "step_count", "run_count", "published_at"]
    list_filter = [PublishedFilter, ("flow", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["flow__name", "note"]
    list_select_related = ["flow"]
    ordering = ["flow__name", "-number"]
    actions = None
    readonly_fields = ["flow_settings", "number", "state", "published_at", "created_at", "checks", "steps"]
    readonly_fields += ["live_steps"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[FlowVersion]:
        steps = Count("steps", distinct=True)
        return super().get_queryset(request).annotate(step_total=steps, run_total=Count("runs", distinct=True))

    def get_inlines(self, request: HttpRequest, obj: FlowVersion | None) -> list[Any]:
        return [StepInline] if is_draft(obj) else []

    def get_fieldsets(self, request: HttpRequest, obj: FlowVersion | None = None) -> list[Any]:
        head = (None, {"fields": ["flow_settings", ("number", "state"), "note"]})
        if not is_draft(obj):
            return [head, ("Steps", {"fields": ["steps"]})]
        assert obj is not None
        current = obj.flow.current_version
        live = f"Published now: v{current.number}, for comparison" if current else "Nothing published yet"
        return [head, ("Checks before it can go live", {"fields": ["checks"]}), (live, {"fields": ["live_steps"]})]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_see_flows(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_operate(request) and (obj is None or is_draft(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_operate(request) and is_draft(obj)  # discarding a draft; published versions are history

    # --- columns and fields ---
    @admin.display(description="Flow", ordering="flow__name")
    def flow_link(self, version: FlowVersion) -> SafeString | str:
        return link(version.flow)

    @admin.display(description="State")
    def state(self, version: FlowVersion) -> str:
        if version.published_at is None:
            return "Draft: being edited; new runs do not use it until it is published"
        current = version.flow.current_version
        if current is not None and current.pk == version.pk:
            return f"Published {version.published_at:%Y-%m-%d %H:%M} UTC; new runs start on it"
        return f"Published {version.published_at:%Y-%m-%d %H:%M} UTC; superseded, runs that started on it stay"

    @admin.display(description="Steps", ordering="step_total")
    def step_count(self, version: FlowVersion) -> int:
        return version.step_total  # type: ignore[attr-defined]

    @admin.display(description="Runs", ordering="run_total")
    def run_count(self, version: FlowVersion) -> SafeString:
        url = changelist_url(FlowRun, version__id__exact=version.pk)
        return format_html('<a href="{}">{}</a>', url, version.run_total)  # type: ignore[attr-defined]

    @admin.display(description="Flow")
    def flow_settings(self, version: FlowVersion) -> SafeString:
        flow = version.flow
        return format_html(
            '<strong><a href="{}">{}</a></strong> {} &middot; trigger: {} &middot; {} &middot; '
            '<a href="{}">change the flow\'s settings</a>',
            reverse("admin:flows_flow_change", args=[flow.pk]),
            flow.name,
            badge(flow.status, flow.get_status_display()),
            flow.get_trigger_display(),
            flow.get_entry_rule_display(),
            reverse("admin:flows_flow_change", args=[flow.pk]),
        )

    @admin.display(description="Problems")
    def checks(self, version: FlowVersion) -> SafeString:
        problems = check_flow(version.flow, version)
        if not problems:
            return format_html("<p>{}</p>", "None: this version can go live.")
        items = format_html_join("", "<li>{}</li>", ((problem,) for problem in problems))
        return format_html('<ul class="errorlist" style="margin-left:0">{}</ul>', items)

    @admin.display(description="Steps")
    def steps(self, version: FlowVersion) -> SafeString:
        return steps_table(version, "This version has no steps.")

    @admin.display(description="Steps")
    def live_steps(self, version: FlowVersion) -> SafeString:
        first = "Activating the flow publishes this draft as its first version."
        return steps_table(version.flow.current_version, first)

    # --- pages ---
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        version = self.get_object(request, object_id)
        context = {**(extra_context or {}), "show_save_and_add_another": False, "show_save_and_continue": False}
        if version is not None:
            waiting = FlowRun.objects.filter(flow_id=version.flow_id, status=RunStatus.WAITING).exclude(version=version)
            context.update(can_operate=can_operate(request), waiting_elsewhere=waiting.count(), flow=version.flow)
        return super().change_view(request, object_id, form_url, context)

    def response_change(self, request: HttpRequest, obj: FlowVersion) -> HttpResponse:
        self.message_user(request, f"Saved draft v{obj.number} of '{obj.flow}'.", messages.SUCCESS)
        for problem in check_flow(obj.flow, obj):
            self.message_user(request, f"Before it can go live: {problem}", messages.WARNING)
        return HttpResponseRedirect(request.path)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        version = self.get_object(request, object_id)
        # Kept on the request (not on this shared admin instance) for response_delete.
        request.discarded_from_flow = version.flow_id if version else None  # type: ignore[attr-defined]
        return super().delete_view(request, object_id, extra_context)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        self.message_user(request, f"Discarded {obj_display}; the published steps stay as they were.", messages.SUCCESS)
        flow_id = getattr(request, "discarded_from_flow", None)
        if flow_id is None:
            return HttpResponseRedirect(reverse("admin:flows_flow_changelist"))
        return HttpResponseRedirect(reverse("admin:flows_flow_change", args=[flow_id]))

    def get_urls(self) -> list[Any]:
        publish = self.admin_site.admin_view(require_POST(self.publish_view))
        return [path("<int:version_id>/publish/", publish, name="flows_flowversion_publish"), *super().get_urls()]

    def publish_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        if not can_operate(request):
            raise PermissionDenied
        version = get_object_or_404(FlowVersion.objects.select_related("flow"), pk=version_id)
        flow, here = version.flow, reverse("admin:flows_flowversion_change", args=[version.pk])
        if version.published_at is not None:
            self.message_user(request, f"v{version.number} is already published.", messages.WARNING)
            return HttpResponseRedirect(here)
        move = request.POST.get("move_waiting_runs") in ("on", "1", "true")
        try:
            publish_version(flow=flow, move_waiting_runs=move, now=clock.now())
        except ValueError as exc:
            note = f"v{version.number} was not published: '{flow}' is live, and this version would break it:"
            self.message_user(request, note, messages.ERROR)
            for problem in check_flow(flow, version) or [str(exc)]:
                self.message_user(request, problem, messages.ERROR)
            return HttpResponseRedirect(here)
        text = f"Published v{version.number} of '{flow}': new runs start on it. "
        if move:
            moved = FlowRun.objects.filter(version=version, status=RunStatus.WAITING).count()
            text += f"{plural(moved, 'waiting run')} moved to it."
        else:
            text += "Waiting runs stay on the version they started on."
        self.message_user(request, text, messages.SUCCESS)
        if flow.status != FlowStatus.LIVE:
            for problem in check_flow(flow, version):
                self.message_user(request, f"Before it can go live: {problem}", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:flows_flow_change", args=[flow.pk]))
