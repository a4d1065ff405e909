"""The step editor (one polymorphic child inline per step type) and the read-only
rendering of a version's steps used on the flow page and on published versions."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import flatten_fieldsets
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from polymorphic.admin import StackedPolymorphicInline

from flows.admin import forms as step_forms
from flows.admin.fields import DURATION_UNITS, WEEKDAYS
from flows.models import (
    AlertTeamStep,
    ContactSubscribedCondition,
    CustomerAttributeCondition,
    DateFieldWait,
    DelayWait,
    EndStep,
    FlowVersion,
    OrderContainsProductsCondition,
    OrderCountCondition,
    OrderStatusCondition,
    OrderTotalCondition,
    PlacedOrderCondition,
    RegisteredAfterCondition,
    SendCampaignStep,
    SplitStep,
    StatusRouterStep,
    Step,
    TagCustomerStep,
    TimeOfDayWait,
)
from flows.models.steps import Condition
from orders.statuses import OrderStatus

COMMON = (None, {"fields": [("position", "key", "label")]})
WHEN_FAILED = ("If the check fails", {"fields": [("otherwise_goto", "negate")]})


class StepChildInline(StackedPolymorphicInline.Child):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # django-polymorphic draws each row from its child inline and ignores the
        # parent's view-only mode: without this, a viewer would see inputs that cannot be saved.
        if self.parent_inline.has_change_permission(request, obj):
            return super().get_readonly_fields(request, obj)
        return flatten_fieldsets(self.fieldsets or [])


NOT_EDITED = {"id", "step_ptr", "version", "polymorphic_ctype"}


def child(model: type[Step], fields: list[Any], description: str, form: type[Any] = step_forms.StepForm) -> type:
    """A child inline for one step type: its own fields, and what it does in words. A
    field added to the model later and not placed here still shows, after the others."""
    fieldsets: list[Any] = [COMMON, (None, {"fields": fields, "description": description})]
    if issubclass(model, Condition):
        fieldsets.append(WHEN_FAILED)
    placed = set(flatten_fieldsets(fieldsets)) | NOT_EDITED
    rest = [f.name for f in model._meta.concrete_fields if f.editable and f.name not in placed]
    if rest:
        fieldsets.append(("More", {"fields": rest}))
    attrs = {"model": model, "form": form, "fieldsets": fieldsets, "__module__": __name__}
    return type(f"{model.__name__}Inline", (StepChildInline,), attrs)


CHILD_INLINES = [
    child(OrderStatusCondition, ["statuses", "as_of"],
          "Passes when the run's order is in one of the ticked statuses: now, or when the flow was triggered "
          "(a fast fulfilment may have moved it on since).",
          step_forms.OrderStatusConditionForm),
    child(ContactSubscribedCondition, ["channel"],
          "Passes when the customer has a valid, unsuppressed address in the channel and subscribed to marketing "
          "in it. Leave it out of transactional flows: a transactional send only needs a valid address."),
    child(PlacedOrderCondition, [("window", "days")],
          "Passes when the customer placed an order (other than the run's own) since the run started, "
          "or in the last N days. Use it after a wait: \"has the customer ordered during the week?\""),
    child(OrderCountCondition, [("operator", "value")], "Compares the number of orders the customer has placed."),
    child(OrderTotalCondition, [("operator", "amount")], "Compares the total of the run's order, in its currency."),
    child(OrderContainsProductsCondition, ["skus", "match_all"],
          "Passes when the run's order has a line with any (or all) of these SKUs.",
          step_forms.OrderContainsProductsConditionForm),
    child(RegisteredAfterCondition, ["after"], "Passes when the customer registered an account after this moment."),
    child(CustomerAttributeCondition, [("attribute", "value")],
          "Passes when the customer's attribute equals the value (case does not matter), or they carry the tag."),
    child(DelayWait, ["minutes"], "The run waits this long, then goes on.", step_forms.DelayWaitForm),
    child(TimeOfDayWait, ["at", "weekdays"],
          "The run waits until the next time it is this time of day for the customer (their time zone, else "
          "the shop's), on one of the ticked days.", step_forms.TimeOfDayWaitForm),
    child(DateFieldWait, ["field", ("offset_days", "at")],
          "The run waits until a date taken from the order or customer, plus an offset. A date already past "
          "does not wait."),
    child(SendCampaignStep, ["campaign"],
          "Sends the campaign with this run's order, customer and trigger event. The campaign's profile decides "
          "who may receive it; a blocked send is logged with its reason and the run goes on."),
    child(AlertTeamStep, ["alias", "address", "subject", "text"],
          "Sends your team a message through a configured channel, e.g. a new big order. Subject and text are "
          "templates: {{ order.number }}, {{ recipient.full_name }}.", step_forms.AlertTeamStepForm),
    child(TagCustomerStep, ["tag", "remove"], "Puts a tag on the customer (or takes it off)."),
    child(SplitStep, ["paths", "holdout_percent"],
          "Sends each customer down one path at random, in proportion to the weights, and always the same one "
          "for the same customer. The holdout leaves the flow here, to measure what the flow adds.",
          step_forms.SplitStepForm),
    child(StatusRouterStep, ["routes", "otherwise_goto"],
          "Jumps forward to the step for the order's current status, e.g. one send per shipping update.",
          step_forms.StatusRouterStepForm),
    child(EndStep, [], "Ends the run here, e.g. at the end of one branch."),
]  # fmt: skip


class StepInline(StackedPolymorphicInline):
    """The steps of a draft version. Published versions are never edited: they show
    the read-only table instead."""

    model = Step
    formset = step_forms.StepFormSet
    child_inlines = CHILD_INLINES
    verbose_name = "step"
    verbose_name_plural = "steps (in the order they run)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_draft(obj) and request.user.has_perm("flows.change_flow")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_draft(obj) and request.user.has_perm("flows.change_flow")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_draft(obj) and request.user.has_perm("flows.change_flow")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("flows.view_flow") or request.user.has_perm("flows.change_flow")


def is_draft(version: Any) -> bool:
    return isinstance(version, FlowVersion) and version.published_at is None


# --- reading a step back in words ----------------------------------------------------

SKIPPED_FIELDS = NOT_EDITED | {"key", "position", "label", "negate", "otherwise_goto"}
STATUS_LABELS = dict(OrderStatus.choices)
FIELD_NAMES = {"minutes": "wait for", "skus": "SKUs", "as_of": "status as of"}
DAY_NAMES = dict(WEEKDAYS)


def duration(minutes: int) -> str:
    size, unit = next((size, unit) for size, unit in DURATION_UNITS if minutes % size == 0)
    count = minutes // size
    return f"{count} {unit[:-1] if count == 1 else unit}"


def _value(step: Step, field: models.Field) -> str:
    value = getattr(step, field.name)
    if field.name == "statuses":
        return ", ".join(STATUS_LABELS.get(s, s) for s in value) or "none"
    if field.name == "weekdays":
        return ", ".join(DAY_NAMES.get(int(d), str(d))[:3] for d in value) or "any day"
    if field.name == "skus":
        return ", ".join(value) or "none"
    if field.name == "paths":
        return "; ".join(f"{p.get('name')} (weight {p.get('weight')}) \u2192 {p.get('goto')}" for p in value) or "none"
    if field.name == "routes":
        return "; ".join(f"{status} \u2192 {goto}" for status, goto in value.items()) or "none"
    if field.name == "minutes":
        return duration(value)
    if isinstance(field, models.BooleanField):
        return "yes" if value else "no"
    if field.choices:
        return str(getattr(step, f"get_{field.name}_display")())
    return "" if value is None else str(value)


def describe_step(step: Step) -> str:
    """The step's settings in one line of words, for read-only tables."""
    parts = []
    for field in type(step)._meta.concrete_fields:
        if field.name in SKIPPED_FIELDS or field.name.endswith("_ptr"):
            continue
        if isinstance(field, models.BooleanField) and not getattr(step, field.name):
            continue
        shown = _value(step, field)
        if shown:
            parts.append(f"{FIELD_NAMES.get(field.name, field.verbose_name)}: {shown}")
    if isinstance(step, Condition):
        if step.negate:
            parts.append("negated")
        parts.append(f"otherwise go to {step.otherwise_goto}" if step.otherwise_goto else "otherwise end the run")
    elif isinstance(step, StatusRouterStep) and step.otherwise_goto:
        parts.append(f"other statuses go to {step.otherwise_goto}")
    return "; ".join(parts)


def steps_table(version: FlowVersion | None, empty: str = "No steps yet.") -> SafeString:
    if version is None:
        return format_html("<p>{}</p>", empty)
    steps = version.ordered_steps()
    if not steps:
        return format_html("<p>{}</p>", empty)
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((s.position, s.key, s._meta.verbose_name, s.label, describe_step(s)) for s in steps),
    )
    return format_html(
        '<table class="herald-steps"><thead><tr><th>#</th><th>Key</th><th>Step</th><th>Label</th><th>Settings</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        rows,
    )


STEP_TYPE_NAMES = {inline.model.__name__: str(inline.model._meta.verbose_name) for inline in CHILD_INLINES}
