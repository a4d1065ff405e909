"""Viber REST Bot API, kind ``viber``.

Sends ``POST https://chatapi.viber.com/pa/send_message`` with the bot's token in
``X-Viber-Auth-Token``. The address is the Viber user id the bot learnt from a
``subscribed`` or ``conversation_started`` callback; Viber only lets a bot write to its
subscribers. Viber answers HTTP 200 even when it refuses: ``status`` 0 is success (with
``message_token``, the provider id), anything else a documented failure code.

Options: ``AUTH_TOKEN``, ``SENDER_NAME`` (up to 28 characters, shown as the sender),
``SENDER_AVATAR`` (an image URL, optional)::

    "viber": {
        "BACKEND": "channels.backends.viber.ViberBackend",
        "OPTIONS": {"AUTH_TOKEN": "445da6az1s345z78-...", "SENDER_NAME": "Acme Shop"}
    }

``data`` keys read: ``image`` (a picture URL; the message then goes as a picture with
the text as its caption, which Viber limits to 768 characters).

Receipts: Viber posts callbacks to the bot's webhook signed with
``X-Viber-Content-Signature`` = hex HMAC-SHA256 of the raw body keyed with the auth
token; set the webhook (``set_webhook``) to ``/channels/receipts/<alias>/``.
``delivered``, ``seen`` (recorded as opened) and ``failed`` name our ``message_token``;
``unsubscribed`` reports that the user left the bot (an opt-out).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from django.http import HttpRequest

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.errors import ChannelError
from channels.models import EventKind
from channels.receipts import ReceiptEvent, ReceiptRejected, ReceiptsMixin, ReceiptUnreadable

SEND_URL = "https://chatapi.viber.com/pa/send_message"
CAPTION_LIMIT = 768
SENDER_NAME_LIMIT = 28

# Viber's documented status codes -> (name, what to tell staff). Failures are
# permanent unless listed in RETRYABLE; DEAD ones also say the address is gone.
STATUS = {
    1: ("invalidUrl", "Viber could not use a URL in the message (the picture or avatar)."),
    2: ("invalidAuthToken", "Viber does not accept AUTH_TOKEN; copy the bot's token from the Viber Admin Panel."),
    3: ("badData", "Viber could not read the message (bad JSON or a field too long)."),
    4: ("missingData", "Viber says the message lacks a required field."),
    5: ("receiverNotRegistered", "The customer is no longer registered on Viber."),
    6: ("receiverNotSubscribed", "The customer is not subscribed to the bot (they never subscribed, or left)."),
    7: ("publicAccountBlocked", "Viber has blocked the bot account."),
    8: ("publicAccountNotFound", "Viber cannot find the bot account for AUTH_TOKEN."),
    9: ("publicAccountSuspended", "Viber has suspended the bot account."),
    10: ("webhookNotSet", "The bot has no webhook; Viber requires one before a bot may send."),
    11: ("receiverNoSuitableDevice", "The customer has no device that can receive this message."),
    12: ("tooManyRequests", "Viber asks us to slow down."),
    13: ("apiVersionNotSupported", "The customer's Viber app is too old for this message."),
}
RETRYABLE = {12}
DEAD = {5: "unregistered", 6: "opted_out", 11: "unregistered"}

CALLBACK_EVENTS = {"delivered": EventKind.DELIVERED, "seen": EventKind.OPENED, "failed": EventKind.FAILED}


class ViberBackend(ReceiptsMixin, HttpChannelBackend):
    kind: ClassVar[str] = "viber"
    required_options: ClassVar[tuple[str, ...]] = ("AUTH_TOKEN", "SENDER_NAME")

    def endpoint(self, message: OutgoingMessage) -> str:
        return SEND_URL

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Viber-Auth-Token": str(self.options["AUTH_TOKEN"])}

    def check(self) -> list[str]:
        problems = super().check()
        if len(str(self.options.get("SENDER_NAME", ""))) > SENDER_NAME_LIMIT:
            problems.append(f"has a SENDER_NAME longer than Viber's {SENDER_NAME_LIMIT} characters")
        return problems

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        sender = {"name": str(self.options["SENDER_NAME"])}
        if self.options.get("SENDER_AVATAR"):
            sender["avatar"] = str(self.options["SENDER_AVATAR"])
        payload: dict[str, Any] = {"receiver": message.address, "min_api_version": 1, "sender": sender}
        image = message.data.get("image")
        if image:
            if len(message.text) > CAPTION_LIMIT:
                raise ChannelError(
                    f"Viber allows {CAPTION_LIMIT} characters with a picture and this text has "
                    f"{len(message.text)}; shorten it or drop the image.",
                    permanent=True,
                )
            payload.update({"type": "picture", "text": message.text, "media": str(image)})
        elif message.text.strip():
            payload.update({"type": "text", "text": message.text})
        else:
            raise ChannelError("The Viber message has no text.", permanent=True)
        return payload

    def parse_response(self, answer: requests.Response) -> SendResult:
        found = self.json_or_error(answer)
        body = found if isinstance(found, dict) else {}
        status = body.get("status")
        if status == 0 and body.get("message_token") is not None:
            return SendResult(provider_message_id=str(body["message_token"]), response_code=answer.status_code)
        name, advice = STATUS.get(status, (str(body.get("status_message", "unknown")), "Viber refused the message."))
        said = body.get("status_message") or name
        dead = DEAD.get(status)
        raise ChannelError(
            f"{advice} (Viber status {status}: {said})",
            permanent=status not in RETRYABLE,
            suppress_address=dead is not None,
            dead_reason=dead or "invalid_address",
            code=name,
            response_code=answer.status_code,
            response_excerpt=excerpt(answer.text),
        )

    # --- receipts ------------------------------------------------------------------------
    def verify_receipt(self, request: HttpRequest, body: bytes) -> None:
        given = request.headers.get("X-Viber-Content-Signature", "").strip()
        if not given:
            raise ReceiptRejected(401, "Missing the X-Viber-Content-Signature header.")
        expected = hmac.new(str(self.options["AUTH_TOKEN"]).encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise ReceiptRejected(401, "X-Viber-Content-Signature does not match the body signed with AUTH_TOKEN.")

    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        try:
            callback = json.loads(body)
        except ValueError:
            raise ReceiptUnreadable("The Viber callback is not JSON.") from None
        if not isinstance(callback, dict) or not callback.get("event"):
            raise ReceiptUnreadable("The Viber callback names no event.")
        event = callback["event"]
        if event == "unsubscribed" and callback.get("user_id"):
            return [ReceiptEvent(opt_out_address=str(callback["user_id"]), detail="The customer left the Viber bot.")]
        if event not in CALLBACK_EVENTS or callback.get("message_token") is None:
            return []  # subscribed, conversation_started, message, webhook: not about a send of ours
        token = str(callback["message_token"])
        return [
            ReceiptEvent(
                kind=CALLBACK_EVENTS[event],
                provider_message_id=token,
                occurred_at=_at(callback.get("timestamp")),
                # Viber retries a callback it got no 200 for: the same event counts once.
                provider_event_id=f"{token}:{event}",
                detail=f"Viber: {callback['desc']}" if callback.get("desc") else "",
                raw=callback,
            )
        ]


def _at(milliseconds: Any) -> datetime | None:
    """Viber's callback time: Unix milliseconds."""
    if not isinstance(milliseconds, (int, float)):
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
