"""Wall-clock arithmetic in a customer's time zone, right across DST changes."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta


def localize(day: date, at: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``zone`` as an aware UTC datetime. A wall time skipped by a DST
    change (02:30 on a spring-forward night) becomes the first minute after the gap; an
    ambiguous one (repeated in the autumn) is its first occurrence."""
    wall = datetime.combine(day, at)
    candidate = wall.replace(tzinfo=zone, fold=0)
    if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        # Nonexistent: walk forward minute by minute to the end of the gap (at most 2 h).
        probe = wall
        for _ in range(180):
            probe += timedelta(minutes=1)
            candidate = probe.replace(tzinfo=zone, fold=0)
            if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == probe:
                break
    return candidate.astimezone(UTC)


def next_time_of_day(now: datetime, zone: zoneinfo.ZoneInfo, at: time, weekdays: list[int]) -> datetime:
    """The first moment strictly after ``now`` when it is ``at`` in ``zone`` on one of
    ``weekdays`` (0 = Monday; empty means every day)."""
    local_today = now.astimezone(zone).date()
    for offset in range(0, 15):
        day = local_today + timedelta(days=offset)
        if weekdays and day.weekday() not in weekdays:
            continue
        moment = localize(day, at, zone)
        if moment > now:
            return moment
    raise ValueError("No matching weekday within two weeks.")
