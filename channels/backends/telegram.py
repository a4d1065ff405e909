"""Telegram Bot API, kind ``telegram``.

Sends ``POST https://api.telegram.org/bot{TOKEN}/sendMessage``. The address is a chat id
(a number, negative for groups) or a public channel's ``@username``; a person must have
started a chat with the bot before it can write to them. The answer
``{"ok": true, "result": {"message_id", "chat": {"id"}}}`` gives the provider id
``<chat id>:<message id>``, since message ids are counted per chat.

Options: ``TOKEN`` (from @BotFather), ``RATE_LIMIT`` (default 30/s) and
``ADDRESS_RATE_LIMIT`` (default 1/s): the Bot API FAQ's limits, about 30 messages a
second overall and no more than one a second to one chat::

    "telegram": {"BACKEND": "channels.backends.telegram.TelegramBackend", "OPTIONS": {"TOKEN": "123456:ABC..."}}

``data`` keys read: ``link`` (the URL Telegram previews) and ``link_preview`` (False
turns the preview off). When the message has ``html`` it is sent with
``parse_mode: HTML`` instead of the text; Telegram reads only a few tags there (b, i,
u, s, a, code, pre, blockquote, tg-spoiler) and refuses the rest.

Telegram sends no delivery receipts.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.errors import ChannelError

API_URL = "https://api.telegram.org"
CHAT_ID = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")
_BAD_TOKEN = "Telegram does not accept the bot token; check TOKEN with @BotFather"
# Telegram has no error codes beyond the HTTP status; the description says which case it
# is. (status, words in the description, dead reason, advice for staff), first match wins.
SEND_ERRORS: list[tuple[int, str, str | None, str]] = [
    (403, "blocked by the user", "opted_out", "The customer blocked the bot on Telegram"),
    (403, "kicked", "opted_out", "The bot was removed from this Telegram chat"),
    (403, "deactivated", "unregistered", "The customer's Telegram account is deleted"),
    (
        400,
        "chat not found",
        "invalid_address",
        "Telegram knows no chat with this id, or the customer never started a chat with the bot",
    ),
    (
        400,
        "can't parse entities",
        None,
        "Telegram could not read the message's HTML; it allows only a few tags (b, i, u, s, a, code, pre)",
    ),
    (401, "", None, _BAD_TOKEN),
    (404, "", None, _BAD_TOKEN),
]


class TelegramBackend(HttpChannelBackend):
    kind: ClassVar[str] = "telegram"
    takes_receipts: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = ("TOKEN",)
    default_rate_limit: ClassVar[str | None] = "30/s"
    default_address_rate_limit: ClassVar[str | None] = "1/s"

    def endpoint(self, message: OutgoingMessage) -> str:
        return f"{API_URL}/bot{self.options['TOKEN']}/sendMessage"

    def validate_address(self, address: str) -> str:
        chat = address.strip()
        if not CHAT_ID.match(chat):
            raise ChannelError(
                f"{address!r} is not a Telegram chat id (a number) or a channel's @username.",
                permanent=True,
                code="invalid_address",
            )
        return chat

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        chat: int | str = int(message.address) if message.address.lstrip("-").isdigit() else message.address
        payload: dict[str, Any] = {"chat_id": chat}
        if message.html.strip():
            payload.update({"text": message.html, "parse_mode": "HTML"})
        elif message.text.strip():
            payload["text"] = message.text
        else:
            raise ChannelError("The Telegram message has no text.", permanent=True)
        if message.data.get("link_preview") is False:
            payload["link_preview_options"] = {"is_disabled": True}
        elif message.data.get("link"):
            payload["link_preview_options"] = {"url": str(message.data["link"])}
        return payload

    def post(self, payload: Any, message: OutgoingMessage) -> requests.Response:
        try:
            return super().post(payload, message)
        except ChannelError as exc:
            raise self._retold(exc) from None

    def _retold(self, exc: ChannelError) -> ChannelError:
        # The bot token is part of the URL, which requests quotes in connection errors.
        text = exc.message.replace(str(self.options["TOKEN"]), "<TOKEN>")
        retry_after = exc.retry_after
        if exc.response_code == 429:
            # Telegram names the wait in the body (parameters.retry_after), not in a header.
            answer = _body(exc.response_excerpt)
            wait = (answer.get("parameters") or {}).get("retry_after")
            said = answer.get("description", "Too Many Requests")
            if isinstance(wait, (int, float)):
                retry_after = float(wait)
                text = f"Telegram asks us to wait {wait} s: {said}."
            else:
                text = f"Telegram asks us to slow down: {said}."
        return ChannelError(
            text,
            permanent=exc.permanent,
            retry_after=retry_after,
            code=exc.code or str(exc.response_code or ""),
            response_code=exc.response_code,
            response_excerpt=exc.response_excerpt,
        )

    def parse_response(self, answer: requests.Response) -> SendResult:
        body = self.json_or_error(answer)
        if isinstance(body, dict) and body.get("ok") is True:
            result = body.get("result") or {}
            chat = (result.get("chat") or {}).get("id")
            return SendResult(
                provider_message_id=f"{chat}:{result.get('message_id')}",
                response_code=answer.status_code,
            )
        raise _failure(body if isinstance(body, dict) else {}, answer)


def _body(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _failure(body: dict[str, Any], answer: requests.Response) -> ChannelError:
    code = body.get("error_code") or answer.status_code
    said = str(body.get("description") or f"HTTP {answer.status_code}")
    dead, advice = None, "Telegram refused the message"
    for status, words, reason, text in SEND_ERRORS:
        if code == status and words in said.lower():
            dead, advice = reason, text
            break
    migrated = (body.get("parameters") or {}).get("migrate_to_chat_id")
    hint = f" The group moved to chat id {migrated}; update the address." if migrated else ""
    return ChannelError(
        f"{advice} ({code}). Telegram says: {said}.{hint}",
        permanent=True,
        suppress_address=dead is not None,
        dead_reason=dead or "invalid_address",
        code=str(code),
        response_code=answer.status_code,
        response_excerpt=excerpt(answer.text),
    )
