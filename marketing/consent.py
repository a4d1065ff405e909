"""Marketing consent per customer and channel: the current state and its history.

Who may change it, and which statement wins:

- The customer speaks for themselves through our unsubscribe link, the preference page
  and their provider (SMS STOP, a spam complaint, a dead push token). Those apply at
  once, whatever the shop said before.
- The shop reports its own flags (``Customer.accepts_email_marketing`` and
  ``accepts_sms_marketing``) with the time of the update at the shop: True means
  subscribed, False unsubscribed, None (the shop never said) changes nothing.
- A shop report never overrides a state that is newer than it: a report whose
  ``occurred_at`` is not later than ``Consent.changed_at`` is ignored, so an old update
  delivered late cannot undo the customer's own unsubscribe.
- A newer explicit opt-in from the shop (True, dated after our unsubscribe) re-subscribes:
  the customer ticked the box at the shop again. "Explicit" means the shop's flag moved:
  shops resend every flag on any change of the customer (Shopify on each order), so a
  True the shop already reported before the unsubscribe, repeated on a later, unrelated
  update, is not a new opt-in and leaves the customer unsubscribed. The price of that
  caution: a customer who unsubscribes with us and then ticks a box that is still ticked
  at the shop stays unsubscribed until they use the preference page.
- Staff and imports apply at once, like the customer's own actions.

Every change writes one ``ConsentEvent`` (when, how, from what to what); asking for the
state a customer already has writes nothing.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from channels.kinds import ChannelKind
from marketing.models import Consent, ConsentEvent
from marketing.models.audience import ConsentSource, ConsentStatus
from orders.models import Customer

# The customer's own word, directly or through their provider.
CUSTOMER_SOURCES = frozenset({ConsentSource.UNSUBSCRIBE_LINK, ConsentSource.PREFERENCE_PAGE, ConsentSource.PROVIDER})
# The channels whose consent shops report (orders.signals.customer_updated).
SHOP_REPORTED_CHANNELS = (ChannelKind.EMAIL, ChannelKind.SMS)


def consent_status(customer: Customer, channel: str) -> ConsentStatus:
    """The customer's marketing consent in ``channel``; never asked when we hold no row."""
    status = Consent.objects.filter(customer=customer, channel=channel).values_list("status", flat=True).first()
    return ConsentStatus(status) if status else ConsentStatus.NEVER_ASKED


def set_consent(
    *, customer: Customer, channel: str, status: str, source: str, now: datetime, detail: str = ""
) -> bool:
    """Record the customer's consent in ``channel``. Returns True when the state changed
    (and a ``ConsentEvent`` was written), False when it already was ``status`` or a shop
    report lost to a newer statement (see the module docstring). ``now`` is when it
    happened: the shop's ``occurred_at`` for a shop report, the present otherwise.

    Raises ``ValueError`` for an unknown channel, status or source."""
    if channel not in ChannelKind.values:
        raise ValueError(f"{channel!r} is not a channel ({', '.join(ChannelKind.values)}).")
    if status not in ConsentStatus.values:
        raise ValueError(f"{status!r} is not a consent status ({', '.join(ConsentStatus.values)}).")
    if source not in ConsentSource.values:
        raise ValueError(f"{source!r} is not a consent source ({', '.join(ConsentSource.values)}).")
    detail = detail[:300]
    with transaction.atomic():
        row = _locked_row(customer, channel, source, now)
        old = row.status
        if old == status:
            return False
        if source == ConsentSource.SHOP and not _shop_report_wins(row, status, now):
            return False
        row.status, row.source, row.changed_at, row.detail = status, source, now, detail
        row.save(update_fields=["status", "source", "changed_at", "detail"])
        ConsentEvent.objects.create(
            customer=customer,
            channel=channel,
            old_status=old,
            new_status=status,
            source=source,
            detail=detail,
            occurred_at=now,
        )
    return True


def apply_shop_consent(*, customer: Customer, consent: dict[str, bool | None], shop_name: str, now: datetime) -> None:
    """The shop's reported flags (``{"email": bool|None, "sms": bool|None}``) as of
    ``now``, the time of the update at the shop."""
    for channel in SHOP_REPORTED_CHANNELS:
        flag = consent.get(channel)
        if flag is None:
            continue
        set_consent(
            customer=customer,
            channel=channel,
            status=ConsentStatus.SUBSCRIBED if flag else ConsentStatus.UNSUBSCRIBED,
            source=ConsentSource.SHOP,
            now=now,
            detail=f"Reported by the shop {shop_name}"[:300],
        )


def _locked_row(customer: Customer, channel: str, source: str, now: datetime) -> Consent:
    row = Consent.objects.select_for_update().filter(customer=customer, channel=channel).first()
    if row is not None:
        return row
    try:
        # The first statement about a channel: two may arrive at once (a shop webhook and
        # an unsubscribe); the unique constraint lets one create, the other waits and reads.
        with transaction.atomic():
            return Consent.objects.create(
                customer=customer, channel=channel, status=ConsentStatus.NEVER_ASKED, source=source, changed_at=now
            )
    except IntegrityError:
        return Consent.objects.select_for_update().get(customer=customer, channel=channel)


def _shop_report_wins(row: Consent, status: str, now: datetime) -> bool:
    if row.status == ConsentStatus.NEVER_ASKED:
        return True
    if now <= row.changed_at:
        return False
    if status == ConsentStatus.SUBSCRIBED and row.source in CUSTOMER_SOURCES:
        return not _shop_already_said(row, ConsentStatus.SUBSCRIBED)
    return True


def _shop_already_said(row: Consent, status: str) -> bool:
    """Whether the shop's last report we acted on in this channel was ``status``."""
    last = (
        ConsentEvent.objects.filter(customer_id=row.customer_id, channel=row.channel, source=ConsentSource.SHOP)
        .order_by("-occurred_at", "-id")
        .values_list("new_status", flat=True)
        .first()
    )
    return last == status
