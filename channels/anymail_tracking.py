"""Delivery events from email providers, through django-anymail's ``tracking`` signal.

Anymail's webhook views verify each ESP's delivery webhook and normalise it into an
``AnymailTrackingEvent``; this receiver turns one into a ledger event on the email
``Message`` whose ``provider_message_id`` is the event's ``message_id`` (the id anymail
reported when the email was sent). ``connect()`` is called from
``ChannelsConfig.ready()``.

An event can only be matched once the send has recorded the provider's id, a few
milliseconds after the ESP accepted the email; only a "queued"/"sent" event plausibly
arrives earlier, and the send records "sent" itself. An event about an email Herald did
not send (a password reset sent through the same ESP) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.utils import timezone

from channels.actions import record_event
from channels.kinds import ChannelKind
from channels.models import EventKind, Message

log = logging.getLogger(__name__)

DISPATCH_UID = "herald.channels.anymail_tracking"

# Anymail's normalised event types; deferred, autoresponded and unknown move nothing.
EVENT_KINDS = {
    "queued": EventKind.SENT,
    "sent": EventKind.SENT,
    "delivered": EventKind.DELIVERED,
    "bounced": EventKind.BOUNCED,
    "rejected": EventKind.FAILED,
    "failed": EventKind.FAILED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
    "complained": EventKind.COMPLAINED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
}
DEAD_EVENTS = {"bounced": "hard_bounce", "complained": "complaint", "unsubscribed": "opted_out"}
# The ESP refused to send because of what it knows about the address.
DEAD_REJECTIONS = {
    "invalid": "invalid_address",
    "bounced": "hard_bounce",
    "spam": "complaint",
    "unsubscribed": "opted_out",
}


def record_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str = "", **kwargs: Any) -> bool:
    """Record one anymail tracking event on its message. Returns whether it was new."""
    kind = EVENT_KINDS.get(event.event_type)
    if kind is None or event.message_id in (None, ""):
        return False
    message = Message.objects.filter(kind=ChannelKind.EMAIL, provider_message_id=str(event.message_id)).first()
    if message is None:
        log.info("No email of ours has %s id %s; %s event ignored.", esp_name, event.message_id, event.event_type)
        return False
    if event.event_type == "rejected":
        dead = DEAD_REJECTIONS.get(event.reject_reason or "")
    else:
        dead = DEAD_EVENTS.get(event.event_type)
    return record_event(
        message=message,
        kind=kind,
        occurred_at=event.timestamp or timezone.now(),
        provider_event_id=str(event.event_id or stable_event_id(event)),
        raw=raw_event(event.esp_event),
        detail=describe(event, esp_name),
        address_dead=dead,
    )


def stable_event_id(event: AnymailTrackingEvent) -> str:
    """For ESPs without event ids: the same webhook delivered twice gets the same id."""
    at = event.timestamp.isoformat() if event.timestamp else ""
    return "anymail:" + hashlib.sha256(f"{event.message_id}|{event.event_type}|{at}".encode()).hexdigest()[:40]


def raw_event(esp_event: Any) -> dict[str, Any]:
    try:
        json.dumps(esp_event)
    except (TypeError, ValueError):
        return {"repr": repr(esp_event)[:4000]}
    return esp_event if isinstance(esp_event, dict) else {"esp_event": esp_event}


def describe(event: AnymailTrackingEvent, esp_name: str) -> str:
    parts = [
        event.description,
        event.mta_response,
        f"reason: {event.reject_reason}" if event.reject_reason else "",
        event.click_url,
    ]
    said = "; ".join(str(p) for p in parts if p)
    return f"{esp_name}: {said}" if said and esp_name else said


def connect() -> None:
    tracking.connect(record_tracking, dispatch_uid=DISPATCH_UID)


def disconnect() -> None:
    tracking.disconnect(dispatch_uid=DISPATCH_UID)
