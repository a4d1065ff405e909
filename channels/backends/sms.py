"""What every SMS-like backend shares: phone numbers in E.164, and the receipt URL.

A number with a leading ``+`` is read as international; any other is read in the
backend's ``OPTIONS["DEFAULT_REGION"]`` (an ISO 3166 code such as ``"US"`` or ``"GB"``).
A number that ``phonenumbers`` says cannot exist fails the message for good and reports
the address dead ("invalid_address"); a national number with no region to read it in
only fails the message, since the fix is in the settings, not the address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import phonenumbers
from django.conf import settings
from django.urls import reverse

from channels.backends.base import OutgoingMessage
from channels.errors import ChannelError


def normalise_phone(address: str, default_region: str | None) -> str:
    """``address`` as E.164 (``+14155550100``). Raises ``ChannelError``."""
    text = address.strip()
    if not text:
        raise ChannelError("The message has no phone number.", permanent=True)
    region = None if text.startswith("+") else (default_region or "").upper() or None
    if not text.startswith("+") and region is None:
        raise ChannelError(
            f"The number {text} has no country code and the backend has no DEFAULT_REGION to read it in; "
            "store numbers as +<country code><number> or set OPTIONS['DEFAULT_REGION'].",
            permanent=True,
            code="no_region",
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise _invalid(text, str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid(text, "no such number exists in its numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _invalid(text: str, why: str) -> ChannelError:
    return ChannelError(
        f"The phone number {text} is not valid ({why}).",
        permanent=True,
        suppress_address=True,
        dead_reason="invalid_address",
        code="invalid_number",
    )


def receipt_url(alias: str) -> str:
    """The public URL of this alias's receipts endpoint, from ``HERALD_PUBLIC_URL``."""
    return settings.HERALD_PUBLIC_URL.rstrip("/") + reverse("channels:receipts", kwargs={"alias": alias})


class PhoneAddressMixin:
    """``validate_address`` and ``check`` for a backend whose addresses are phone numbers."""

    options: dict[str, Any]

    def validate_address(self, address: str) -> str:
        return normalise_phone(address, self.options.get("DEFAULT_REGION"))

    def check(self) -> list[str]:
        problems: list[str] = super().check()  # type: ignore[misc]
        return problems + region_problems(self.options)

    def sms_text(self, message: OutgoingMessage) -> str:
        """The text to send; an SMS has no subject or HTML part to fall back on."""
        if not message.text.strip():
            raise ChannelError("The SMS has no text to send.", permanent=True, code="empty")
        return message.text


def region_problems(options: Mapping[str, Any]) -> list[str]:
    region = options.get("DEFAULT_REGION")
    if region and str(region).upper() not in phonenumbers.SUPPORTED_REGIONS:
        return [f"has DEFAULT_REGION {region!r}, which is not a two-letter country code such as 'US' or 'GB'"]
    return []
