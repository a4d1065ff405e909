"""Form fields that let staff edit the steps' JSON settings without writing JSON.

Each field shows the stored value in a friendly form (checkboxes, a comma-separated
list, one line per path or route) and turns what staff typed back into the JSON the
step reads, with an error message that says which line is wrong and how to write it.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from orders.statuses import OrderStatus

STEP_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")
WEEKDAYS = list(enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]))
# Largest first: a stored number of minutes is shown in the largest unit that divides it.
DURATION_UNITS = [(10080, "weeks"), (1440, "days"), (60, "hours"), (1, "minutes")]
COLUMNS = {"class": "herald-columns"}


def is_step_key(text: str) -> bool:
    return bool(STEP_KEY.match(text)) and len(text) <= 60


class StatusesField(forms.TypedMultipleChoiceField):
    """Canonical order statuses as checkboxes; stored as a list of their values."""

    widget = forms.CheckboxSelectMultiple(attrs=COLUMNS)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=OrderStatus.choices, coerce=str, **kwargs)


class WeekdaysField(forms.TypedMultipleChoiceField):
    """Weekdays as checkboxes; stored as a list of numbers, 0 = Monday."""

    widget = forms.CheckboxSelectMultiple(attrs=COLUMNS)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(choices=WEEKDAYS, coerce=int, **kwargs)


class SkuListField(forms.CharField):
    """SKUs typed as "TEE-001, MUG-002"; stored as a list without blanks or repeats."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(sku) for sku in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        skus = [part.strip() for part in re.split(r"[,\n]", value or "")]
        return list(dict.fromkeys(sku for sku in skus if sku))

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise ValidationError("Name at least one SKU, e.g. TEE-001, MUG-002.", code="required")


def _lines(text: str) -> list[tuple[int, str]]:
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


class SplitPathsField(forms.CharField):
    """One path per line as "name weight step-key"; stored as
    ``[{"name": "A", "weight": 50, "goto": "send-offer"}, ...]``."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 40, "placeholder": "A 50 send-offer\nB 50 send-reminder"})
    EXAMPLE = 'write each path as "name weight step-key", e.g. "A 50 send-offer"'

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(f"{p.get('name', '')} {p.get('weight', 0)} {p.get('goto', '')}" for p in value)
        return value

    def to_python(self, value: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        paths, errors, names = [], [], set()
        for number, line in _lines(value or ""):
            parts = line.split()
            if len(parts) != 3:
                errors.append(f"Line {number} ({line!r}): {self.EXAMPLE}.")
                continue
            name, weight, goto = parts
            if not weight.isdigit() or int(weight) < 1:
                errors.append(f"Line {number}: the weight {weight!r} must be a whole number of 1 or more.")
            if not is_step_key(goto):
                errors.append(f"Line {number}: {goto!r} is not a step key (lowercase letters, digits and dashes).")
            if name in names:
                errors.append(f"Line {number}: the name {name!r} is used twice; give each path its own name.")
            names.add(name)
            if weight.isdigit():
                paths.append({"name": name, "weight": int(weight), "goto": goto})
        if errors:
            raise ValidationError(errors)
        return paths

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise ValidationError(f"Add at least one path: {self.EXAMPLE}.", code="required")


class StatusRoutesField(forms.CharField):
    """One route per line as "status step-key"; stored as ``{"shipped": "send-shipped"}``."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 40, "placeholder": "shipped send-shipped\ndelivered send-done"})
    EXAMPLE = 'write each route as "status step-key", e.g. "shipped send-shipped"'

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{status} {goto}" for status, goto in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        if isinstance(value, dict):
            return value
        routes: dict[str, str] = {}
        errors = []
        for number, line in _lines(value or ""):
            parts = line.split()
            if len(parts) != 2:
                errors.append(f"Line {number} ({line!r}): {self.EXAMPLE}.")
                continue
            status, goto = parts
            if status not in OrderStatus.values:
                known = ", ".join(OrderStatus.values)
                errors.append(f"Line {number}: {status!r} is not an order status; use one of {known}.")
            elif status in routes:
                errors.append(f"Line {number}: {status!r} already has a route.")
            if not is_step_key(goto):
                errors.append(f"Line {number}: {goto!r} is not a step key (lowercase letters, digits and dashes).")
            routes.setdefault(status, goto)
        if errors:
            raise ValidationError(errors)
        return routes

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise ValidationError(f"Add at least one route: {self.EXAMPLE}.", code="required")


class DurationWidget(forms.MultiWidget):
    def __init__(self) -> None:
        units = [(str(size), label) for size, label in DURATION_UNITS]
        super().__init__([forms.NumberInput(attrs={"min": 1, "style": "width:6em"}), forms.Select(choices=units)])

    def decompress(self, value: Any) -> list[Any]:
        if not value:
            return [None, "1440"]
        minutes = int(value)
        size = next(size for size, _ in DURATION_UNITS if minutes % size == 0)
        return [minutes // size, str(size)]


class DurationField(forms.MultiValueField):
    """A number and a unit (minutes to weeks); stored as minutes."""

    widget = DurationWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (forms.IntegerField(min_value=1), forms.ChoiceField(choices=[(str(s), u) for s, u in DURATION_UNITS]))
        super().__init__(fields=fields, require_all_fields=True, **kwargs)

    def compress(self, data_list: list[Any]) -> int | None:
        if not data_list:
            return None
        amount, unit = data_list
        return int(amount) * int(unit)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.clean(data) != initial
        except ValidationError:
            return True
