"""Conversions: an order attributed to the send that brought it, and the revenue.

An order counts for a send when it was placed within the attribution window after a
touch of that send: the message going out (``send``), the customer opening it
(``open``) or clicking in it (``click``). Of all qualifying touches of the customer's
sends, the last one before the order wins, and an order is attributed once
(``Conversion.order`` is unique).

Windows are per channel and touch, in hours, from ``HERALD_ATTRIBUTION_WINDOWS``; what
the setting leaves out keeps the defaults below. A channel may be given one number for
all its touches; ``"*"`` is every channel not named; 0 turns a touch off::

    HERALD_ATTRIBUTION_WINDOWS = {"email": {"send": 72, "click": 168}, "whatsapp": 48}

Defaults: email 5 days for a send, an open or a click; SMS and push 24 hours; every
other channel 3 days.

A send's own touch is when the ledger says it went (``sent_at``, else when it was
decided); a message that failed or bounced never reached anyone, so its send is no
touch, though an open or click recorded for it still is. Opens and clicks are read from
the ledger's events, so a second open a week after the first counts from the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet, Sum

from channels.kinds import ChannelKind
from channels.models import DeliveryEvent, EventKind, Message, MessageStatus
from marketing.models import Campaign, Conversion, Send
from marketing.models.sends import Decision
from orders.models import Order

Touch = Conversion.Touch

_HOURS_5_DAYS = 5 * 24
DEFAULT_WINDOWS_HOURS: dict[str, dict[str, float]] = {
    "email": {Touch.SEND: _HOURS_5_DAYS, Touch.OPEN: _HOURS_5_DAYS, Touch.CLICK: _HOURS_5_DAYS},
    "sms": {Touch.SEND: 24, Touch.OPEN: 24, Touch.CLICK: 24},
    "mobile_push": {Touch.SEND: 24, Touch.OPEN: 24, Touch.CLICK: 24},
    "web_push": {Touch.SEND: 24, Touch.OPEN: 24, Touch.CLICK: 24},
    "*": {Touch.SEND: 72, Touch.OPEN: 72, Touch.CLICK: 72},
}
# When two touches happen at the same instant, the stronger signal wins.
_TOUCH_STRENGTH = {Touch.SEND: 0, Touch.OPEN: 1, Touch.CLICK: 2}
_UNDELIVERED = (MessageStatus.FAILED, MessageStatus.BOUNCED)


def _hours(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(
            f"HERALD_ATTRIBUTION_WINDOWS[{where}] must be a number of hours (0 or more), not {value!r}."
        )
    return float(value)


def attribution_windows() -> dict[str, dict[str, timedelta]]:
    """The windows in effect: channel kind (and "*" for any other) -> touch -> how long
    after the touch an order still counts. A touch whose window is zero is absent.
    Raises ImproperlyConfigured, naming the entry, when the setting is malformed."""
    configured = getattr(settings, "HERALD_ATTRIBUTION_WINDOWS", None) or {}
    if not isinstance(configured, dict):
        raise ImproperlyConfigured("HERALD_ATTRIBUTION_WINDOWS must map a channel to hours or to {touch: hours}.")
    every = [*ChannelKind.values, "*"]
    merged = {channel: dict(DEFAULT_WINDOWS_HOURS.get(channel, DEFAULT_WINDOWS_HOURS["*"])) for channel in every}
    for channel, value in configured.items():
        if channel not in merged:
            raise ImproperlyConfigured(
                f"HERALD_ATTRIBUTION_WINDOWS names the channel {channel!r}; use one of: {', '.join(every)}."
            )
        base = merged[channel]
        if isinstance(value, dict):
            for touch, hours in value.items():
                if touch not in _TOUCH_STRENGTH:
                    raise ImproperlyConfigured(
                        f"HERALD_ATTRIBUTION_WINDOWS[{channel!r}] names the touch {touch!r}; use send, open or click."
                    )
                base[touch] = _hours(hours, f"{channel!r}][{touch!r}")
        else:
            hours = _hours(value, repr(channel))
            for touch in _TOUCH_STRENGTH:
                base[touch] = hours
    return {
        channel: {touch: timedelta(hours=hours) for touch, hours in touches.items() if hours > 0}
        for channel, touches in merged.items()
    }


@dataclass(frozen=True)
class _Candidate:
    send_id: int
    touch: str
    at: datetime


def _window(windows: dict[str, dict[str, timedelta]], channel: str, touch: str) -> timedelta | None:
    return windows.get(channel, windows["*"]).get(touch)


_SENDS = connection.ops.quote_name(Send._meta.db_table)
_MESSAGES = connection.ops.quote_name(Message._meta.db_table)
_EVENTS = connection.ops.quote_name(DeliveryEvent._meta.db_table)

# Every touch of the customer's sends that may fall in a window, in one round trip (this
# runs inside the order's processing transaction): the sends themselves, the first open
# and click the ledger keeps on the message, and every open and click event.
_TOUCHES_SQL = f"""
SELECT s.id, s.channel, 'send', COALESCE(m.sent_at, s.decided_at)
FROM {_SENDS} s LEFT JOIN {_MESSAGES} m ON m.id = s.message_id
WHERE s.customer_id = %(customer)s AND s.decision = %(sent)s
  AND s.decided_at >= %(earliest)s AND s.decided_at <= %(placed)s
  AND (m.status IS NULL OR NOT (m.status = ANY(%(undelivered)s)))
UNION ALL
SELECT s.id, s.channel, t.touch, t.at
FROM {_SENDS} s JOIN {_MESSAGES} m ON m.id = s.message_id
CROSS JOIN LATERAL (VALUES ('open', m.opened_at), ('click', m.clicked_at)) AS t(touch, at)
WHERE s.customer_id = %(customer)s AND s.decision = %(sent)s AND s.decided_at <= %(placed)s
  AND t.at >= %(earliest)s AND t.at <= %(placed)s
UNION ALL
SELECT s.id, s.channel, CASE e.kind WHEN %(opened)s THEN 'open' ELSE 'click' END, e.occurred_at
FROM {_SENDS} s JOIN {_EVENTS} e ON e.message_id = s.message_id
WHERE s.customer_id = %(customer)s AND s.decision = %(sent)s AND s.decided_at <= %(placed)s
  AND e.kind IN (%(opened)s, %(clicked)s) AND e.occurred_at >= %(earliest)s AND e.occurred_at <= %(placed)s
"""


def _touches(customer_id: int, placed_at: datetime, windows: dict[str, dict[str, timedelta]]) -> list[_Candidate]:
    longest = max((w for touches in windows.values() for w in touches.values()), default=timedelta(0))
    params = {
        "customer": customer_id,
        "sent": Decision.SENT,
        "earliest": placed_at - longest,
        "placed": placed_at,
        "undelivered": [str(status) for status in _UNDELIVERED],
        "opened": EventKind.OPENED,
        "clicked": EventKind.CLICKED,
    }
    with connection.cursor() as cursor:
        cursor.execute(_TOUCHES_SQL, params)
        rows = cursor.fetchall()
    return [
        _Candidate(send_id, touch, at)
        for send_id, channel, touch, at in rows
        if at <= placed_at and (window := _window(windows, channel, touch)) is not None and placed_at - at <= window
    ]


def last_touch(*, order: Order) -> tuple[int, str, datetime] | None:
    """(send id, touch, when) of the last qualifying touch before ``order`` was placed,
    or None."""
    if order.customer_id is None:
        return None
    candidates = _touches(order.customer_id, order.placed_at, attribution_windows())
    if not candidates:
        return None
    best = max(candidates, key=lambda c: (c.at, _TOUCH_STRENGTH[c.touch], c.send_id))
    return best.send_id, best.touch, best.at


def attribute_order(*, order: Order, now: datetime) -> Conversion | None:
    """Attribute ``order`` to the last qualifying touch before it was placed. Returns
    the conversion (the existing one when the order was attributed before), or None
    when no send, open or click of the customer's falls within its window.

    Safe to run twice and from two workers at once: the order's conversion is unique,
    and the loser of a race returns the winner's row. Also callable for a backfill."""
    existing = Conversion.objects.filter(order=order).first()
    if existing is not None:
        return existing
    touch = last_touch(order=order)
    if touch is None:
        return None
    send_id, kind, touched_at = touch
    try:
        with transaction.atomic():
            return Conversion.objects.create(
                order=order,
                send_id=send_id,
                touch=kind,
                touched_at=touched_at,
                revenue=order.total,
                currency=order.currency or order.shop.currency,
                attributed_at=now,
            )
    except IntegrityError:
        return Conversion.objects.get(order=order)


def conversions_for_sends(sends: QuerySet[Send]) -> QuerySet[Conversion]:
    """The conversions attributed to any of ``sends`` (a campaign's, a variant's, a
    flow step's), for counting and summing on a dashboard."""
    return Conversion.objects.filter(send__in=sends)


def revenue_by_currency(conversions: QuerySet[Conversion]) -> list[tuple[str, Decimal]]:
    """Revenue summed per currency, by currency code: amounts in different currencies
    are never added together."""
    rows = conversions.order_by().values("currency").annotate(total=Sum("revenue")).order_by("currency")
    return [(row["currency"], row["total"]) for row in rows]


def campaign_revenue(campaign: Campaign) -> list[tuple[str, Decimal]]:
    """The revenue of the orders attributed to ``campaign``'s sends, per currency."""
    return revenue_by_currency(Conversion.objects.filter(send__campaign=campaign))


def conversions_by_touch(conversions: QuerySet[Conversion]) -> dict[str, int]:
    """How many conversions each kind of touch won (send, open, click)."""
    rows = conversions.order_by().values("touch").annotate(n=Count("id"))
    return {row["touch"]: row["n"] for row in rows}
