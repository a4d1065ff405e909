"""The engine's one source of "now", so tests, dry runs and simulations can move time."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime

from django.utils import timezone

_override: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("herald_now", default=None)


def now() -> datetime:
    return _override.get() or timezone.now()


@contextlib.contextmanager
def frozen_at(moment: datetime) -> Iterator[None]:
    token = _override.set(moment)
    try:
        yield
    finally:
        _override.reset(token)
