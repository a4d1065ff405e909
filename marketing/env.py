"""Strict readers for settings that come from the environment.

A wrong value is an error that names the variable, raised at start-up, so a
misconfigured deployment fails loudly instead of running with a guess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """The variable's value, or ``default``; with no default an unset variable is an error."""
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"The environment variable {name} is not set.")
        return default
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"The environment variable {name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"The environment variable {name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"The environment variable {name}={number} is below its minimum of {minimum}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_json(name: str, default: Any) -> Any:
    """A JSON value, or a path to a JSON file when the value starts with ``@``."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    source = value
    if value.startswith("@"):
        try:
            source = Path(value[1:]).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"The environment variable {name} names a file that cannot be read: {exc}.") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"The environment variable {name} is not valid JSON: {exc}.") from None


@dataclass(frozen=True)
class DatabaseURL:
    name: str
    user: str
    password: str
    host: str
    port: str
    options: dict[str, str]

    def as_django(self) -> dict[str, object]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
            "OPTIONS": dict(self.options),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }


def env_database_url(name: str) -> DatabaseURL:
    """Parse ``postgres://user:password@host:port/dbname?host=/socket/dir``.

    Only PostgreSQL is accepted: Herald relies on its constraints, partial indexes
    and ``SKIP LOCKED``.
    """
    raw = env_str(name)
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"The environment variable {name} must be a postgres:// URL; got scheme {parts.scheme!r}."
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ImproperlyConfigured(f"The environment variable {name} names no database (postgres://host/DBNAME).")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    # A unix socket directory may be given as ?host=/path, the libpq convention.
    host = query.pop("host", None) or unquote(parts.hostname or "")
    try:
        port = str(parts.port or "")
    except ValueError:
        raise ImproperlyConfigured(f"The environment variable {name} has an invalid port.") from None
    return DatabaseURL(
        name=dbname,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=host,
        port=port,
        options=query,
    )


def env_redis_url(name: str) -> str:
    raw = env_str(name)
    scheme = urlsplit(raw).scheme
    if scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"The environment variable {name} must be a redis:// or rediss:// URL; got {scheme!r}.")
    return raw


def env_path_prefix(name: str, default: str) -> str:
    """A URL path prefix such as ``admin/``: no leading slash, one trailing slash."""
    value = env_str(name, default).strip()
    cleaned = value.strip("/")
    if not cleaned or any(c in cleaned for c in " ?#"):
        raise ImproperlyConfigured(f"The environment variable {name}={value!r} is not a usable URL path such as 'admin/'.")
    return cleaned + "/"
