"""``CHANNEL_BACKENDS``: alias -> {"BACKEND": dotted path, "KIND": kind, "OPTIONS": {...}}.

The shape of Django's ``STORAGES``: backends are imported lazily, one instance per alias.
An alias that is itself a kind name (``"sms"``) may leave out ``KIND``; several accounts
of one kind get their own aliases (``"twilio-us"``, ``"twilio-eu"``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from channels.backends.base import ChannelBackend
from channels.kinds import ChannelKind


class InvalidChannelBackend(ImproperlyConfigured):
    pass


class BackendHandler:
    def __init__(self) -> None:
        self._instances: dict[str, ChannelBackend] = {}

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        return dict(getattr(settings, "CHANNEL_BACKENDS", {}))

    def reset(self) -> None:
        self._instances.clear()

    def kind_of(self, alias: str) -> str:
        entry = self._entry(alias)
        kind = entry.get("KIND") or alias
        if kind not in ChannelKind.values:
            raise InvalidChannelBackend(
                f"CHANNEL_BACKENDS[{alias!r}] needs a KIND, one of {', '.join(ChannelKind.values)}."
            )
        return str(kind)

    def aliases(self, kind: str | None = None) -> list[str]:
        names = list(self.config)
        return [a for a in names if kind is None or self._safe_kind(a) == kind]

    def default_alias(self, kind: str) -> str:
        """The alias named after the kind, else the first configured for it."""
        if kind in self.config and self._safe_kind(kind) == kind:
            return kind
        for alias in self.aliases(kind):
            return alias
        raise InvalidChannelBackend(f"No CHANNEL_BACKENDS entry sends {kind!r} messages.")

    def __getitem__(self, alias: str) -> ChannelBackend:
        if alias not in self._instances:
            entry = self._entry(alias)
            path = entry.get("BACKEND")
            if not path:
                raise InvalidChannelBackend(f"CHANNEL_BACKENDS[{alias!r}] has no BACKEND.")
            try:
                backend_class = import_string(path)
            except ImportError as exc:
                raise InvalidChannelBackend(f"CHANNEL_BACKENDS[{alias!r}]: cannot import {path!r} ({exc}).") from exc
            kind = self.kind_of(alias)
            if getattr(backend_class, "kind", None) not in (None, kind):
                raise InvalidChannelBackend(
                    f"CHANNEL_BACKENDS[{alias!r}]: {path} sends {backend_class.kind!r}, not {kind!r}."
                )
            instance = backend_class(alias, entry.get("OPTIONS", {}))
            instance.kind = kind
            self._instances[alias] = instance
        return self._instances[alias]

    def _entry(self, alias: str) -> dict[str, Any]:
        try:
            return dict(self.config[alias])
        except KeyError:
            raise InvalidChannelBackend(f"No channel backend {alias!r} in CHANNEL_BACKENDS.") from None

    def _safe_kind(self, alias: str) -> str | None:
        try:
            return self.kind_of(alias)
        except ImproperlyConfigured:
            return None


backends = BackendHandler()


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHANNEL_BACKENDS":
        backends.reset()


setting_changed.connect(_reset)
