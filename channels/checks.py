"""A system check that reads every configured backend at start-up, so a missing option is
named before the first send fails."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from channels.registry import backends


@register()
def check_channel_backends(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for alias in backends.aliases():
        try:
            backend = backends[alias]
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="channels.E001"))
            continue
        for problem in backend.check():
            errors.append(
                Error(f"CHANNEL_BACKENDS[{alias!r}] ({type(backend).__name__}) {problem}.", id="channels.E002")
            )
    return errors
