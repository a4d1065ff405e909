"""Small pieces of HTML the flows admin pages share."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from flows.models import FlowStatus, RunStatus

COLOURS = {
    FlowStatus.DRAFT: "#6b7280",
    FlowStatus.LIVE: "#15803d",
    FlowStatus.PAUSED: "#b45309",
    FlowStatus.ARCHIVED: "#374151",
    RunStatus.ACTIVE: "#2563eb",
    RunStatus.WAITING: "#0f766e",
    RunStatus.COMPLETED: "#15803d",
    RunStatus.EXITED: "#6b7280",
    RunStatus.FAILED: "#b91c1c",
}
PRE = "white-space:pre-wrap;max-height:40em;overflow:auto;margin:0"


def badge(status: str, label: str) -> SafeString:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;white-space:nowrap">{}</span>',
        COLOURS.get(status, "#6b7280"),
        label,
    )


def pretty_json(value: object) -> SafeString:
    return format_html('<pre style="{}">{}</pre>', PRE, json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def admin_url(obj: models.Model) -> str | None:
    """The admin page of a row, or None when its model is not in the admin (yet)."""
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def link(obj: models.Model | None, text: Any = None) -> SafeString | str:
    if obj is None:
        return "-"
    url = admin_url(obj)
    shown = obj if text is None else text
    return format_html('<a href="{}">{}</a>', url, shown) if url else format_html("{}", shown)


def changelist_url(model: type[models.Model], **filters: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{query}" if query else url


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
