"""When each beat task last ran, kept in Redis for ``/healthz``."""

from __future__ import annotations

from datetime import datetime

import redis
from django.conf import settings

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def record_tick(name: str, now: datetime) -> None:
    client().set(f"herald:tick:{name}", now.isoformat())


def last_tick(name: str) -> str | None:
    value = client().get(f"herald:tick:{name}")
    return value.decode() if value else None
