"""Token buckets in Redis, so a burst waits (rescheduled) instead of being refused."""

from __future__ import annotations

import time

import redis
from django.conf import settings

from channels.backends.base import RateLimit

# KEYS[1] bucket; ARGV: capacity, refill per second, now (s), requested tokens.
# Returns 0 when the tokens were taken, else the seconds to wait (as a string).
_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = (want - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return tostring(wait)
"""

_client: redis.Redis | None = None
_script = None


def _redis() -> redis.Redis:
    global _client, _script
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _script = _client.register_script(_SCRIPT)
    return _client


def take(key: str, limit: RateLimit, now: float | None = None) -> float:
    """Take one token from the bucket ``key``. Returns 0.0, or the seconds to wait."""
    _redis()
    assert _script is not None
    now = time.time() if now is None else now
    rate = limit.count / limit.seconds
    result = _script(keys=[f"herald:rate:{key}"], args=[limit.count, rate, now, 1])
    return float(result)
