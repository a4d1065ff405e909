"""When the flows beat task last ran, kept in Redis for ``/healthz``."""

from __future__ import annotations

from datetime import datetime

import redis
from django.conf import settings


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def record_tick(name: str, now: datetime) -> None:
    _client().set(f"herald:tick:{name}", now.isoformat())


def last_tick(name: str) -> str | None:
    value = _client().get(f"herald:tick:{name}")
    return value.decode() if value else None
