"""LINE Messaging API push messages, kind ``line``.

Sends ``POST https://api.line.me/v2/bot/message/push`` with
``Authorization: Bearer CHANNEL_ACCESS_TOKEN``. The address is a LINE user id
(``U`` and 32 hex digits; group ``C..`` and room ``R..`` ids work too), learnt from the
channel's webhook; a user who has blocked the account still gets a 200 from LINE.

Every request carries ``X-Line-Retry-Key``, a UUID derived from the message's idempotency
key, so each attempt of one message has the same key. LINE executes a request with a
given key once; a repeat is answered 409 with ``x-line-accepted-request-id`` naming the
request that was accepted. That makes a repeat safe, so:

- a 409 for our key means the message was sent by an earlier attempt: it counts as sent;
- a timeout (``OutcomeUnknown``) needs no status lookup (LINE has none for pushes, hence
  ``supports_status_lookup = False``): resending the message from the admin settles it,
  because the retry key makes LINE drop the copy if the first attempt got through.
  LINE keeps a retry key for a limited time (24 hours when this was written), so settle
  unknown LINE messages within a day.

The provider id is the accepted request's id (``x-line-request-id`` of a 200, the same
value as ``x-line-accepted-request-id`` of a later 409), so a first answer and a
duplicate name the message the same way.

Options: ``CHANNEL_ACCESS_TOKEN`` (a long-lived channel access token)::

    "line": {"BACKEND": "channels.backends.line.LineBackend", "OPTIONS": {"CHANNEL_ACCESS_TOKEN": "..."}}

``data`` keys read: none. LINE sends no delivery receipts to a push sender. A 429 is
either a burst over the rate limit (retried) or the month's message quota used up
(failed: the body's message says which).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.errors import ChannelError

PUSH_URL = "https://api.line.me/v2/bot/message/push"
RETRY_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, PUSH_URL)
TARGET = re.compile(r"^[UCR][0-9a-f]{32}$")
ADVICE = {
    401: "LINE does not accept CHANNEL_ACCESS_TOKEN (expired or revoked); issue a new one in the LINE Developers "
    "Console",
    403: "LINE does not allow this channel to use the push API (check the plan and permissions)",
    409: "LINE answered 409 without naming an accepted request",
}


def retry_key(idempotency_key: str) -> str:
    """The ``X-Line-Retry-Key`` for a message: the same for every attempt of it."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, idempotency_key))


class LineBackend(HttpChannelBackend):
    kind: ClassVar[str] = "line"
    takes_receipts: ClassVar[bool] = False
    supports_status_lookup: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = ("CHANNEL_ACCESS_TOKEN",)

    def endpoint(self, message: OutgoingMessage) -> str:
        return PUSH_URL

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.options['CHANNEL_ACCESS_TOKEN']}",
            "X-Line-Retry-Key": retry_key(message.idempotency_key),
        }

    def validate_address(self, address: str) -> str:
        target = address.strip()
        if not TARGET.match(target):
            raise ChannelError(
                f"{address!r} is not a LINE user id (U followed by 32 hex digits).",
                permanent=True,
                code="invalid_address",
            )
        return target

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        if not message.text.strip():
            raise ChannelError("The LINE message has no text.", permanent=True)
        return {"to": message.address, "messages": [{"type": "text", "text": message.text}]}

    def post(self, payload: Any, message: OutgoingMessage) -> requests.Response:
        try:
            return super().post(payload, message)
        except ChannelError as exc:
            if exc.response_code != 429:
                raise
            said = _said(exc.response_excerpt)
            # One status for two things: a burst (wait a little) and the month's quota
            # (waiting until next month is no retry).
            quota = "monthly limit" in said.lower()
            text = (
                f"LINE says the channel has used up this month's message quota ({said}). Raise the plan in "
                "LINE Official Account Manager, or send again next month."
                if quota
                else f"LINE asks us to slow down ({said or 'rate limit'})."
            )
            raise ChannelError(
                text,
                permanent=quota,
                retry_after=None if quota else exc.retry_after,
                code="monthly_limit" if quota else "429",
                response_code=429,
                response_excerpt=exc.response_excerpt,
            ) from None

    def parse_response(self, answer: requests.Response) -> SendResult:
        if answer.status_code == 200:
            return SendResult(
                provider_message_id=answer.headers.get("x-line-request-id", "") or _first_sent_id(answer),
                response_code=200,
            )
        if answer.status_code == 409:
            accepted = answer.headers.get("x-line-accepted-request-id")
            if accepted:
                return SendResult(
                    provider_message_id=accepted, response_code=409, response_excerpt=excerpt(answer.text)
                )
        said = _said(answer.text) or f"HTTP {answer.status_code}"
        advice = ADVICE.get(answer.status_code, "LINE refused the message")
        raise ChannelError(
            f"{advice}: {said}.",
            permanent=True,
            code=str(answer.status_code),
            response_code=answer.status_code,
            response_excerpt=excerpt(answer.text),
        )


def _said(text: str) -> str:
    """LINE's error words: ``message`` and the ``details`` it lists."""
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("message") or "")]
    for detail in body.get("details") or []:
        if isinstance(detail, dict):
            parts.append(f"{detail.get('property', '')}: {detail.get('message', '')}".strip(": "))
    return "; ".join(part for part in parts if part)


def _first_sent_id(answer: requests.Response) -> str:
    try:
        return str(answer.json()["sentMessages"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
