"""Facebook Messenger Send API (Meta), kind ``messenger``.

Sends ``POST https://graph.facebook.com/{API_VERSION}/me/messages`` with the Page access
token as ``Authorization: Bearer`` (Meta also takes it as ``?access_token=``; a header
keeps it out of URLs and logs). The address is the customer's Page-scoped id (PSID). The
answer is ``{"recipient_id", "message_id"}``.

Options: ``PAGE_ACCESS_TOKEN``, ``APP_SECRET`` and ``VERIFY_TOKEN`` (the webhook, see
``meta.py``), ``API_VERSION`` (default v21.0), ``DEFAULT_TAG`` (default
``POST_PURCHASE_UPDATE``)::

    "messenger": {
        "BACKEND": "channels.backends.messenger.MessengerBackend",
        "OPTIONS": {"PAGE_ACCESS_TOKEN": "EAAJ...", "APP_SECRET": "...", "VERIFY_TOKEN": "..."}
    }

Messenger's policy: a Page may message a person freely for 24 hours after the person
last wrote (``messaging_type: UPDATE``); after that only with a message tag, for
non-promotional updates (``messaging_type: MESSAGE_TAG``). The documented tags are
``POST_PURCHASE_UPDATE`` (orders, shipping), ``ACCOUNT_UPDATE``,
``CONFIRMED_EVENT_UPDATE`` and ``HUMAN_AGENT`` (a person answering, up to 7 days).

``data`` keys read:

- ``messenger_tag``: one of the tags above; an empty value (or ``None``) sends
  ``messaging_type: UPDATE`` without a tag, for content that may only go inside the
  24-hour window (promotions). Absent, the ``DEFAULT_TAG`` option applies.

Receipts: subscribe the Page webhook (fields ``message_deliveries``) to
``/channels/receipts/<alias>/``. Delivery events name each delivered message id
(``delivery.mids``). ``message_reads`` only carry a watermark ("everything before
this time was read") and no message id, so they are not recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.backends.meta import (
    DEFAULT_API_VERSION,
    GRAPH_URL,
    ErrorTable,
    MetaWebhookMixin,
    graph_error,
    load_webhook,
    unix_time,
)
from channels.errors import ChannelError
from channels.models import EventKind
from channels.receipts import ReceiptEvent

TAGS = ("POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "HUMAN_AGENT")

_UNAVAILABLE = (
    True,
    "unregistered",
    "Messenger says this person is not available (they blocked the Page or left Messenger)",
)
# The Send API's documented errors: permanent?, dead reason, advice for staff.
SEND_ERRORS: ErrorTable = {
    (551, 1545041): _UNAVAILABLE,
    551: _UNAVAILABLE,
    (10, 2018278): (
        True,
        None,
        "The message falls outside Messenger's 24-hour window and has no message tag that allows it; give the "
        "campaign a tag (POST_PURCHASE_UPDATE for order updates) or send only after the customer writes",
    ),
    (100, 2018001): (True, "invalid_address", "Messenger found no person with this Page-scoped id"),
    10: (True, None, "The app may not message for this Page; check the pages_messaging permission"),
    200: (True, None, "The app lacks a permission for this Page; check pages_messaging"),
    190: (
        True,
        None,
        "The Page access token has expired or was revoked; generate a new one and update PAGE_ACCESS_TOKEN",
    ),
    1200: (False, None, "Messenger had a temporary send failure; will retry"),
}


class MessengerBackend(MetaWebhookMixin, HttpChannelBackend):
    kind: ClassVar[str] = "messenger"
    required_options: ClassVar[tuple[str, ...]] = ("PAGE_ACCESS_TOKEN", "APP_SECRET", "VERIFY_TOKEN")

    def endpoint(self, message: OutgoingMessage) -> str:
        version = self.options.get("API_VERSION") or DEFAULT_API_VERSION
        return f"{GRAPH_URL}/{version}/me/messages"

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.options['PAGE_ACCESS_TOKEN']}"}

    def check(self) -> list[str]:
        problems = super().check()
        tag = self.options.get("DEFAULT_TAG")
        if tag and tag not in TAGS:
            problems.append(f"has a DEFAULT_TAG {tag!r} that is not one of {', '.join(TAGS)}")
        return problems

    def validate_address(self, address: str) -> str:
        psid = address.strip()
        if not psid.isdigit():
            raise ChannelError(
                f"{address!r} is not a Messenger Page-scoped id (PSID), which is all digits.",
                permanent=True,
                code="invalid_address",
            )
        return psid

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        if not message.text.strip():
            raise ChannelError("The Messenger message has no text.", permanent=True)
        tag = message.data.get("messenger_tag", self.options.get("DEFAULT_TAG", TAGS[0]))
        payload: dict[str, Any] = {"recipient": {"id": message.address}}
        if tag:
            if tag not in TAGS:
                raise ChannelError(
                    f"{tag!r} is not a Messenger message tag; use one of {', '.join(TAGS)}.", permanent=True
                )
            payload.update({"messaging_type": "MESSAGE_TAG", "tag": tag})
        else:
            payload["messaging_type"] = "UPDATE"
        payload["message"] = {"text": message.text}
        return payload

    def parse_response(self, answer: requests.Response) -> SendResult:
        error = graph_error(answer)
        if error is not None:
            raise error.mapped(SEND_ERRORS, "Messenger")
        body = self.json_or_error(answer)
        if not isinstance(body, dict) or not body.get("message_id"):
            raise ChannelError(
                "Messenger accepted the request but named no message id.",
                permanent=True,
                response_code=answer.status_code,
                response_excerpt=excerpt(answer.text),
            )
        return SendResult(provider_message_id=str(body["message_id"]), response_code=answer.status_code)

    # --- receipts: the Page webhook ------------------------------------------------------
    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        events = []
        for entry in load_webhook(body, "page"):
            for messaging in entry.get("messaging") or []:
                delivery = messaging.get("delivery") if isinstance(messaging, dict) else None
                if not isinstance(delivery, dict):
                    continue  # reads, echoes, inbound messages: nothing about a message id of ours
                at = unix_time(delivery.get("watermark"), milliseconds=True)
                for mid in delivery.get("mids") or []:
                    events.append(
                        ReceiptEvent(
                            kind=EventKind.DELIVERED,
                            provider_message_id=str(mid),
                            occurred_at=at,
                            provider_event_id=f"{mid}:delivered",
                            raw=messaging,
                        )
                    )
        return events
