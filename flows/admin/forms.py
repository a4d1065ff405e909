"""The forms behind the flow settings page and the step editor."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import slugify
from polymorphic.formsets import BasePolymorphicInlineFormSet

from channels.registry import backends
from flows.admin.fields import (
    DurationField,
    SkuListField,
    SplitPathsField,
    StatusesField,
    StatusRoutesField,
    WeekdaysField,
)
from flows.models import (
    AlertTeamStep,
    DelayWait,
    EntryRule,
    Flow,
    OrderContainsProductsCondition,
    OrderStatusCondition,
    SplitStep,
    StatusRouterStep,
    TimeOfDayWait,
    TriggerKind,
)
from flows.models.steps import key_validator

ORDER_TRIGGERS = {TriggerKind.NEW_ORDER, TriggerKind.ORDER_STATUS_CHANGED}
# What a new step's key starts with when staff leave it and the label blank.
KEY_STEMS = {
    "OrderStatusCondition": "status-check",
    "ContactSubscribedCondition": "subscribed-check",
    "PlacedOrderCondition": "ordered-check",
    "OrderCountCondition": "order-count-check",
    "OrderTotalCondition": "total-check",
    "OrderContainsProductsCondition": "products-check",
    "RegisteredAfterCondition": "registered-check",
    "CustomerAttributeCondition": "customer-check",
    "DelayWait": "wait",
    "TimeOfDayWait": "wait-until",
    "DateFieldWait": "wait-for-date",
    "SendCampaignStep": "send",
    "AlertTeamStep": "alert-team",
    "TagCustomerStep": "tag",
    "SplitStep": "split",
    "EndStep": "end",
    "StatusRouterStep": "route",
}


class FlowForm(forms.ModelForm):
    from_statuses = StatusesField(
        required=False, label="From statuses", help_text="Only changes out of one of these statuses (none ticked: any)."
    )
    to_statuses = StatusesField(
        required=False, label="To statuses", help_text="Only changes into one of these statuses (none ticked: any)."
    )

    class Meta:
        model = Flow
        fields = [
            "name", "trigger", "from_statuses", "to_statuses", "shop", "entry_rule", "entry_days",
            "relevance_days", "only_registered_after_live", "exit_on_order",
        ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        trigger = data.get("trigger")
        if trigger and trigger != TriggerKind.ORDER_STATUS_CHANGED:
            for name in ("from_statuses", "to_statuses"):
                if data.get(name):
                    self.add_error(name, "Statuses only apply to the 'Order status changed' trigger: untick them.")
        if data.get("entry_rule") == EntryRule.ONCE_PER_ORDER and trigger and trigger not in ORDER_TRIGGERS:
            self.add_error("entry_rule", "'Once per order' needs an order trigger (New order or Order status changed).")
        return data


# --- steps -----------------------------------------------------------------------


class StepForm(forms.ModelForm):
    """The fields every step has. Key and position may be left blank on a new step:
    the formset then makes a key from the label and puts the step at the end."""

    key = forms.CharField(
        required=False,
        max_length=60,
        validators=[key_validator],
        help_text="Stays the same across versions, so a moved run finds its place. Blank: made from the label.",
    )
    position = forms.IntegerField(
        required=False,
        min_value=0,
        widget=forms.NumberInput(attrs={"style": "width:6em"}),
        help_text="Steps run in this order; change it to reorder. Blank: at the end.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "otherwise_goto" in self.fields:
            self.fields["otherwise_goto"].label = "Otherwise go to"
        if "negate" in self.fields:
            self.fields["negate"].label = "Negate"

    def has_changed(self) -> bool:
        # A step added in the editor is meant, even when staff left every field as it was
        # ("End the run" has nothing to fill in).
        return self.instance._state.adding or super().has_changed()


class OrderStatusConditionForm(StepForm):
    statuses = StatusesField(help_text="Passes when the order is in any of the ticked statuses.")

    class Meta:
        model = OrderStatusCondition
        fields = "__all__"


class OrderContainsProductsConditionForm(StepForm):
    skus = SkuListField(label="SKUs", help_text="Separated by commas, e.g. TEE-001, MUG-002.")

    class Meta:
        model = OrderContainsProductsCondition
        fields = "__all__"


class DelayWaitForm(StepForm):
    minutes = DurationField(label="Wait for", help_text="From when the run reaches this step.")

    class Meta:
        model = DelayWait
        fields = "__all__"


class TimeOfDayWaitForm(StepForm):
    weekdays = WeekdaysField(help_text="None ticked: the next day that time comes round.")

    class Meta:
        model = TimeOfDayWait
        fields = "__all__"


class SplitStepForm(StepForm):
    paths = SplitPathsField(
        help_text='One path per line: a name, a weight and the key of a later step, e.g. "A 50 send-offer". '
        "A customer always lands on the same path."
    )

    class Meta:
        model = SplitStep
        fields = "__all__"


class StatusRouterStepForm(StepForm):
    routes = StatusRoutesField(
        help_text="One route per line: a canonical order status and the key of a later step, "
        'e.g. "shipped send-shipped".'
    )

    class Meta:
        model = StatusRouterStep
        fields = "__all__"


class AlertTeamStepForm(StepForm):

    class Meta:
        model = AlertTeamStep
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        aliases = backends.aliases()
        if "alias" not in self.fields:  # shown read-only
            return
        current = self.initial.get("alias") or ""
        if aliases:
            choices = [("", "---------")] + [(alias, describe_alias(alias)) for alias in aliases]
            if current and current not in aliases:
                choices.append((current, f"{current} (no longer configured)"))
            self.fields["alias"] = forms.ChoiceField(choices=choices, help_text=self.fields["alias"].help_text)


def describe_alias(alias: str) -> str:
    try:
        return f"{alias} ({backends.kind_of(alias)})"
    except ImproperlyConfigured:
        return f"{alias} (misconfigured)"


class StepFormSet(BasePolymorphicInlineFormSet):
    """Fills in blank keys and positions before the formset checks keys are unique."""

    def add_fields(self, form: forms.BaseForm, index: int | None) -> None:
        super().add_fields(form, index)
        # Django adds the inline's foreign key to the formset's own form class so that
        # (version, key) is checked for uniqueness; each step type has its own form
        # class here, and without this the clash reaches the database as an error page.
        meta = form._meta  # type: ignore[attr-defined]
        if meta.fields and self.fk.name not in meta.fields:
            meta.fields = [*meta.fields, self.fk.name]

    def clean(self) -> None:
        kept = [
            form
            for form in self.forms
            if hasattr(form, "cleaned_data") and not form.errors and not self._should_delete_form(form)
        ]
        taken = {form.cleaned_data.get("key") for form in kept} - {"", None}
        last = max((form.cleaned_data.get("position") or 0 for form in kept), default=0)
        for form in kept:
            if not form.cleaned_data.get("key"):
                default = KEY_STEMS.get(form._meta.model.__name__, "step")
                stem = slugify(form.cleaned_data.get("label") or "")[:50].strip("-") or default
                key, number = stem, 2
                while key in taken:
                    key, number = f"{stem}-{number}", number + 1
                taken.add(key)
                form.cleaned_data["key"] = form.instance.key = key
            if form.cleaned_data.get("position") is None:
                last += 10
                form.cleaned_data["position"] = form.instance.position = last
        super().clean()
