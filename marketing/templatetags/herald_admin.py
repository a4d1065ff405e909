"""The admin front page's "needs attention" panel. Each room names its own check in
``HERALD_ATTENTION_CHECKS``; they are imported lazily, so ``marketing`` names no room
above it."""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.conf import settings
from django.utils.module_loading import import_string

register = template.Library()
log = logging.getLogger(__name__)


@register.inclusion_tag("admin/herald_attention.html")
def herald_attention() -> dict[str, Any]:
    items = []
    for path in getattr(settings, "HERALD_ATTENTION_CHECKS", []):
        try:
            items += [{"label": label, "count": count, "url": url} for label, count, url in import_string(path)()]
        except Exception:
            # The front page must open even when one room's check breaks.
            log.exception("Attention check %s failed", path)
    return {"items": [i for i in items if i["count"]], "checked": bool(items)}
