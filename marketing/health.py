"""``/healthz``: database, Redis, and each app's beat heartbeat and backlog.

Each app that owns periodic work names a check function in ``HERALD_HEALTH_CHECKS``;
they are imported lazily so this module names no app above ``marketing``.
"""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:300]}


def _redis() -> dict[str, Any]:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        # Evicting keys would drop queued tasks: Herald needs noeviction.
        return {"ok": True, "maxmemory_policy": policy, "noeviction": policy == "noeviction"}
    except Exception as exc:
        return {"ok": False, "error": str(exc)[:300]}


def healthz(request: HttpRequest) -> JsonResponse:
    report: dict[str, Any] = {"database": _database(), "redis": _redis(), "beat": {}, "backlog": {}}
    healthy = report["database"]["ok"] and report["redis"]["ok"]
    if healthy:
        for path in settings.HERALD_HEALTH_CHECKS:
            try:
                part = import_string(path)()
            except Exception as exc:
                healthy = False
                report.setdefault("errors", {})[path] = str(exc)[:300]
                continue
            report["beat"].update(part.get("beat", {}))
            report["backlog"].update(part.get("backlog", {}))
    report["ok"] = healthy
    return JsonResponse(report, status=200 if healthy else 503)
