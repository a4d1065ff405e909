"""Small pieces the marketing admin pages share."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

COLOURS = {
    "draft": "#6b7280",
    "active": "#15803d",
    "archived": "#374151",
    "sent": "#15803d",
    "blocked": "#b91c1c",
    "deferred": "#b45309",
    "subscribed": "#15803d",
    "unsubscribed": "#b91c1c",
    "never_asked": "#6b7280",
}
PRE = "white-space:pre-wrap;max-height:40em;overflow:auto;margin:0"
# Put first in a preview's own document: no script (the sandbox already stops it), no
# remote image, font or stylesheet, so a preview never fires an open-tracking pixel or
# tells a third party that someone looked.
PREVIEW_POLICY = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
)


def badge(status: str, label: str) -> SafeString:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;white-space:nowrap">{}</span>',
        COLOURS.get(status, "#6b7280"),
        label,
    )


def short(text: str, limit: int = 80) -> SafeString:
    """The start of a long value in a list, the whole of it on hover."""
    shown = text if len(text) <= limit else text[: limit - 1] + "\u2026"
    return format_html('<span title="{}">{}</span>', text[:2000], shown)


def pre(text: str) -> SafeString:
    return format_html('<pre style="{}">{}</pre>', PRE, text)


def admin_url(obj: models.Model) -> str | None:
    """The admin page of a row, or None when its model is not in the admin."""
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
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def posted(request: HttpRequest) -> tuple[Any, Any]:
    """A form's data and files: the request's on a POST (even an empty one, so a form
    posted with nothing ticked is bound and says what is missing), none on a GET."""
    return (request.POST, request.FILES) if request.method == "POST" else (None, None)


def page_context(model_admin: admin.ModelAdmin, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    """What an extra admin page of ``model_admin`` needs for the admin's own layout."""
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
        **extra,
    }


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record that is evidence: listed and viewed, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
