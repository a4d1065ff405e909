"""How ``marketing`` hears the rooms below it about consent and dead addresses.

``connect()`` is called from ``MarketingConfig.ready()``; ``disconnect()`` undoes it
(tests). Both are idempotent: each receiver is connected under a fixed dispatch uid.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels import signals as channel_signals
from channels.kinds import ChannelKind
from marketing.consent import apply_shop_consent, set_consent
from marketing.models import ContactPoint
from marketing.models.audience import ConsentSource, ConsentStatus, SuppressionReason
from marketing.suppression import PHONE_CHANNELS, normalise_value, suppress
from orders import signals as order_signals
from orders.models import Customer, Shop

log = logging.getLogger(__name__)

# channels' address_dead reasons -> our suppression reasons.
DEAD_REASONS: dict[str, str] = {
    "hard_bounce": SuppressionReason.HARD_BOUNCE,
    "complaint": SuppressionReason.COMPLAINT,
    "opted_out": SuppressionReason.OPTED_OUT,
    "invalid_address": SuppressionReason.INVALID_ADDRESS,
    "unregistered": SuppressionReason.UNREGISTERED,
}
# The customer said "no more" through their provider: their marketing consent ends too.
WITHDRAWS_CONSENT = frozenset({SuppressionReason.OPTED_OUT, SuppressionReason.COMPLAINT})
# The address itself is gone: the contact point (push token, chat id) is no use any more.
INVALIDATES_CONTACT_POINT = frozenset({SuppressionReason.UNREGISTERED, SuppressionReason.INVALID_ADDRESS})

CUSTOMER_UPDATED_UID = "marketing.receivers.customer_updated"
ADDRESS_DEAD_UID = "marketing.receivers.address_dead"


def on_customer_updated(
    sender: Any,
    *,
    customer: Customer,
    shop: Shop,
    consent: dict[str, bool | None],
    occurred_at: datetime | None = None,
    **kwargs: Any,
) -> None:
    apply_shop_consent(customer=customer, consent=consent or {}, shop_name=shop.name, now=occurred_at or timezone.now())


def on_address_dead(
    sender: Any, *, kind: str, address: str, reason: str, detail: str = "", message: Any = None, **kwargs: Any
) -> None:
    """Suppress a dead address in its channel; for an opt-out or a complaint, unsubscribe
    the customers who own it; for a dead token or id, mark the contact point invalid."""
    if kind not in ChannelKind.values or not address:
        log.warning("address_dead for an unknown channel %r or an empty address; ignored", kind)
        return
    mapped = DEAD_REASONS.get(reason)
    if mapped is None:
        # A reason channels added after this map: the address is still dead.
        log.warning("address_dead with an unknown reason %r; suppressing as an invalid address", reason)
        mapped = SuppressionReason.INVALID_ADDRESS
    now = timezone.now()
    words = detail or f"The provider reported {reason.replace('_', ' ')}."
    if message is not None:
        words = f"{words} (message {getattr(message, 'pk', message)})"
    with transaction.atomic():
        suppress(value=address, channel=kind, reason=mapped, detail=words, now=now)
        if mapped in WITHDRAWS_CONSENT:
            for customer in owners_of(kind, address):
                set_consent(
                    customer=customer,
                    channel=kind,
                    status=ConsentStatus.UNSUBSCRIBED,
                    source=ConsentSource.PROVIDER,
                    now=now,
                    detail=words,
                )
        if mapped in INVALIDATES_CONTACT_POINT:
            ContactPoint.objects.filter(channel=kind, address=address, is_valid=True).update(
                is_valid=False, updated_at=now
            )


def owners_of(kind: str, address: str) -> list[Customer]:
    """The customers reached at ``address`` in ``kind``: by their email or phone, and by
    their contact points."""
    match = Q(contact_points__channel=kind, contact_points__address=address)
    if kind == ChannelKind.EMAIL:
        match |= Q(email=normalise_value(kind, address))
    elif kind in PHONE_CHANNELS:
        match |= Q(phone=normalise_value(kind, address))
    return list(Customer.objects.filter(match).distinct().order_by("pk"))


def connect() -> None:
    order_signals.customer_updated.connect(on_customer_updated, dispatch_uid=CUSTOMER_UPDATED_UID)
    channel_signals.address_dead.connect(on_address_dead, dispatch_uid=ADDRESS_DEAD_UID)


def disconnect() -> bool:
    """Returns whether the receivers were connected."""
    first = order_signals.customer_updated.disconnect(dispatch_uid=CUSTOMER_UPDATED_UID)
    second = channel_signals.address_dead.disconnect(dispatch_uid=ADDRESS_DEAD_UID)
    return first or second
