"""Where a customer is reached in a channel, and which variant of a campaign they get."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from channels.kinds import ChannelKind
from marketing.models import Campaign, CampaignVariant, ContactPoint
from orders.models import Customer


@dataclass(frozen=True)
class Address:
    value: str
    valid: bool
    why: str = ""


def address_for(customer: Customer, channel: str) -> Address:
    """The customer's address in ``channel``: email and phone from the shop's mirror; the
    rest (push tokens, chat user ids) from contact points, the newest valid one."""
    if channel == ChannelKind.EMAIL:
        if customer.email and customer.email_valid:
            return Address(customer.email, True)
        return Address(customer.email_raw, False, "no valid email address" if customer.email_raw else "no email address")
    if channel in (ChannelKind.SMS, ChannelKind.WHATSAPP):
        if customer.phone and customer.phone_valid:
            return Address(customer.phone, True)
        return Address(customer.phone_raw, False, "no valid phone number" if customer.phone_raw else "no phone number")
    point = (
        ContactPoint.objects.filter(customer=customer, channel=channel, is_valid=True).order_by("-updated_at").first()
    )
    if point is None:
        return Address("", False, f"no {ChannelKind(channel).label} address")
    return Address(point.address, True)


def _bucket(*parts: object) -> float:
    """A stable number in [0, 1) from the parts: the same customer and campaign always
    land in the same place, whatever retries happen."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(campaign: Campaign, customer: Customer) -> CampaignVariant | None:
    """The customer's variant, or None for the control group. Sticky per customer and
    campaign; changing weights moves only the customers at the boundaries."""
    if campaign.control_percent and _bucket("control", campaign.pk, customer.pk) * 100 < campaign.control_percent:
        return None
    variants = [v for v in campaign.variants.all().order_by("name") if v.weight > 0]
    if not variants:
        return None
    total = sum(v.weight for v in variants)
    point = _bucket("variant", campaign.pk, customer.pk) * total
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]
