"""Helpers platform modules use to read values out of payloads, strictly.

Each raises ``PayloadError`` with a sentence a person can act on.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from orders.platforms.base import PayloadError


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"The body is not UTF-8 text (byte {exc.start} is invalid).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    if not isinstance(data, dict):
        raise PayloadError(f"The body is JSON but not an object (it is a {type(data).__name__}).")
    return data


def need(data: Mapping[str, Any], key: str, where: str = "body") -> Any:
    if key not in data or data[key] is None or data[key] == "":
        raise PayloadError(f"The {where} has no '{key}'.")
    return data[key]


def obj(data: Mapping[str, Any], key: str, where: str = "body") -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"'{key}' in the {where} should be an object, not {type(value).__name__}.")
    return value


def items(data: Mapping[str, Any], key: str, where: str = "body") -> list[dict[str, Any]]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(f"'{key}' in the {where} should be a list of objects.")
    return value


def text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()


def ident(value: Any) -> str:
    """An id as text: 123 and "123" are the same id; 0 means none (WooCommerce guests)."""
    if value is None or value == 0 or value == "0":
        return ""
    return str(value).strip()


def money(value: Any, field_name: str) -> Decimal:
    if value is None or value == "":
        return Decimal("0")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"'{field_name}' is not an amount: {value!r}.") from None
    if not amount.is_finite():
        raise PayloadError(f"'{field_name}' is not an amount: {value!r}.")
    return amount.quantize(Decimal("0.01"))


def quantity(value: Any, field_name: str) -> Decimal:
    if value is None or value == "":
        return Decimal("1")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"'{field_name}' is not a quantity: {value!r}.") from None
    if not amount.is_finite():
        raise PayloadError(f"'{field_name}' is not a quantity: {value!r}.")
    return amount


def timestamp(value: Any, zone: zoneinfo.ZoneInfo, field_name: str, problems: list[str] | None = None) -> datetime:
    """An aware UTC datetime. A timestamp without a time zone is read in the shop's
    zone (``zone``), and the reading is noted in ``problems``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    raw = text(value)
    if not raw:
        raise PayloadError(f"'{field_name}' is missing.")
    parsed = parse_datetime(raw.replace(" +", "+"))
    if parsed is None:
        raise PayloadError(f"'{field_name}' is not a date and time: {raw!r}.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
        if problems is not None and str(zone) != "UTC":
            problems.append(f"{field_name} {raw!r} had no time zone; read in the shop's ({zone}).")
    return parsed.astimezone(UTC)


def optional_timestamp(value: Any, zone: zoneinfo.ZoneInfo, field_name: str) -> datetime | None:
    if value is None or value == "":
        return None
    return timestamp(value, zone, field_name)


def flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "subscribed", "opted_in"}:
        return True
    if lowered in {"0", "false", "no", "unsubscribed", "not_subscribed", "opted_out", "redacted"}:
        return False
    return None
