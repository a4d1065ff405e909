"""Frequency caps and quiet hours for marketing sends.

Settings (defaults below):
    HERALD_FREQUENCY_CAPS = {"sms": {"count": 1, "hours": 24}, ...}
    HERALD_QUIET_HOURS = {"sms": ["21:00", "09:00"], ...}   # local to the customer
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings

from marketing.models import Send
from marketing.models.campaigns import Profile
from marketing.models.sends import Decision
from orders.models import Customer, Shop

DEFAULT_CAPS = {
    "email": {"count": 3, "hours": 24},
    "sms": {"count": 1, "hours": 24},
    "whatsapp": {"count": 1, "hours": 24},
    "mobile_push": {"count": 3, "hours": 24},
    "web_push": {"count": 3, "hours": 24},
}
DEFAULT_QUIET_HOURS = {
    "sms": ["21:00", "09:00"],
    "whatsapp": ["21:00", "09:00"],
    "viber": ["21:00", "09:00"],
    "mobile_push": ["22:00", "08:00"],
    "web_push": ["22:00", "08:00"],
}


@dataclass(frozen=True)
class Cap:
    count: int
    window: timedelta


def cap_for(channel: str) -> Cap | None:
    caps = getattr(settings, "HERALD_FREQUENCY_CAPS", DEFAULT_CAPS)
    entry = caps.get(channel)
    if not entry:
        return None
    return Cap(count=int(entry["count"]), window=timedelta(hours=float(entry["hours"])))


def cap_frees_at(*, customer: Customer, channel: str, now: datetime) -> datetime | None:
    """None when another marketing send is allowed now; else when the cap frees."""
    cap = cap_for(channel)
    if cap is None:
        return None
    recent = list(
        Send.objects.filter(
            customer=customer,
            channel=channel,
            decision=Decision.SENT,
            campaign__profile=Profile.MARKETING,
            decided_at__gt=now - cap.window,
        )
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)[: cap.count]
    )
    if len(recent) < cap.count:
        return None
    # The oldest of the last ``count`` sends leaves the window first.
    return recent[-1] + cap.window


def customer_zone(customer: Customer, shop: Shop | None) -> zoneinfo.ZoneInfo:
    return customer.zone or (shop.zone if shop is not None else zoneinfo.ZoneInfo("UTC"))


def _parse(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(*, channel: str, zone: zoneinfo.ZoneInfo, now: datetime) -> datetime | None:
    """None when ``now`` is outside the channel's quiet hours in ``zone``; else the next
    allowed minute (aware, UTC). Computed on local wall-clock time, so a DST change
    during the night still ends quiet hours at the local time staff set."""
    quiet = getattr(settings, "HERALD_QUIET_HOURS", DEFAULT_QUIET_HOURS).get(channel)
    if not quiet:
        return None
    start, end = _parse(quiet[0]), _parse(quiet[1])
    local = now.astimezone(zone)
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    wall = datetime.combine(day, end)
    # A wall time that does not exist (skipped by DST) moves forward by the gap.
    resume = wall.replace(tzinfo=zone)
    round_trip = resume.astimezone(zoneinfo.ZoneInfo("UTC")).astimezone(zone)
    if round_trip.replace(tzinfo=None) != wall:
        resume = (wall + timedelta(hours=1)).replace(tzinfo=zone)
    return resume.astimezone(zoneinfo.ZoneInfo("UTC"))
