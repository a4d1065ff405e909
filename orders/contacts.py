"""Normalising what shops send about a person: email, phone, time zone, currency."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from babel.numbers import list_currencies
from django.core.exceptions import ValidationError
from django.core.validators import validate_email


@dataclass(frozen=True)
class Normalised:
    value: str  # empty when unreadable
    raw: str
    valid: bool


def normalise_email(raw: str) -> Normalised:
    raw = (raw or "").strip()
    if not raw:
        return Normalised("", "", False)
    candidate = raw.lower()
    try:
        validate_email(candidate)
    except ValidationError:
        return Normalised("", raw, False)
    return Normalised(candidate, raw, True)


def normalise_phone(raw: str, country: str = "") -> Normalised:
    """E.164, read with the shop's country for numbers written without +country."""
    raw = (raw or "").strip()
    if not raw:
        return Normalised("", "", False)
    try:
        number = phonenumbers.parse(raw, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return Normalised("", raw, False)
    if not phonenumbers.is_valid_number(number):
        return Normalised("", raw, False)
    return Normalised(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), raw, True)


def normalise_timezone(raw: str) -> Normalised:
    raw = (raw or "").strip()
    if not raw:
        return Normalised("", "", False)
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return Normalised("", raw, False)
    return Normalised(raw, raw, True)


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def is_known_currency(code: str) -> bool:
    return code.upper() in _currencies()
