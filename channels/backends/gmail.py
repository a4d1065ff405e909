"""Gmail API: ``users.messages.send`` from a connected Gmail or Google Workspace mailbox.

    "email-gmail": {
        "BACKEND": "channels.backends.gmail.GmailBackend",
        "KIND": "email",
        "OPTIONS": {"CLIENT_ID": "...apps.googleusercontent.com", "CLIENT_SECRET": "...",
                    "REFRESH_TOKEN": "1//...", "USER": "me", "DEFAULT_FROM": "Acme <shop@acme.example>"},
    }

The refresh token comes from connecting the mailbox once with the scope
``https://www.googleapis.com/auth/gmail.send``. Access tokens come from
``https://oauth2.googleapis.com/token`` (``grant_type=refresh_token``) and are kept until
shortly before they expire. The message is the RFC 822 bytes of
``channels.backends.email.build_email`` (same headers and ``data`` keys as
``EmailBackend``), sent as ``{"raw": base64url}``; the provider id is Gmail's message id.
Gmail sends no delivery receipts. A From other than the mailbox must be one of its
verified "send mail as" aliases, or Gmail rewrites it.

Errors: 400 (``invalidArgument``, ``failedPrecondition``) is permanent; 403
``rateLimitExceeded``/``userRateLimitExceeded``/``dailyLimitExceeded`` and 429 retry (a
429 may say "Retry after <time>" in its text); 5xx retries; ``invalid_grant`` on refresh
means the mailbox must be reconnected.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from channels.backends.base import OutgoingMessage, SendResult, excerpt
from channels.backends.email import MailAnswer, MailboxApiBackend, MailPayload
from channels.errors import ChannelError

TOKEN_URL = "https://oauth2.googleapis.com/token"
SEND_URL = "https://gmail.googleapis.com/gmail/v1/users/{user}/messages/send"
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded"}
RETRY_AFTER_TEXT = re.compile(r"Retry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")


class GmailBackend(MailboxApiBackend):
    service: ClassVar[str] = "Google"
    required_options: ClassVar[tuple[str, ...]] = ("CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN")
    # A send costs 100 of a mailbox's 250 quota units a second.
    default_rate_limit: ClassVar[str | None] = "2/s"

    def token_url(self) -> str:
        return TOKEN_URL

    def token_form(self) -> dict[str, str]:
        return {
            "client_id": self.options["CLIENT_ID"],
            "client_secret": self.options["CLIENT_SECRET"],
            "refresh_token": self.options["REFRESH_TOKEN"],
            "grant_type": "refresh_token",
        }

    def token_refused(self, status: int, body: dict[str, Any]) -> ChannelError:
        error = str(body.get("error", ""))
        detail = str(body.get("error_description", "")) or error or f"HTTP {status}"
        if error == "invalid_grant":
            words = (
                f"Google no longer accepts this mailbox's refresh token ({detail}). A staff member must "
                "reconnect the Gmail mailbox and update REFRESH_TOKEN."
            )
        elif error in ("invalid_client", "unauthorized_client"):
            words = f"Google does not accept CLIENT_ID and CLIENT_SECRET ({detail}); check the OAuth client."
        else:
            words = f"Google refused the token request: {detail}."
        return ChannelError(words, permanent=True, code=f"oauth_{error or status}", response_code=status)

    def endpoint(self, message: OutgoingMessage) -> str:
        return SEND_URL.format(user=quote(str(self.options.get("USER") or "me"), safe="@"))

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.access_token()}"}

    def request_kwargs(self, payload: MailPayload, message: OutgoingMessage) -> dict[str, Any]:
        return {"data": json.dumps({"raw": base64.urlsafe_b64encode(payload.raw).decode("ascii")})}

    def post(self, payload: MailPayload, message: OutgoingMessage) -> MailAnswer:
        try:
            return super().post(payload, message)
        except ChannelError as exc:
            # Gmail's sending limit answers 429 with the time to retry in the text only.
            if exc.response_code == 429 and exc.retry_after is None:
                exc.retry_after = retry_after_from_text(exc.response_excerpt)
            raise

    def parse_response(self, answer: MailAnswer) -> SendResult:
        response = answer.response
        if response.status_code == 200:
            body = self.json_or_error(response)
            return SendResult(
                provider_message_id=str(body.get("id") or answer.message_id),
                response_code=200,
                response_excerpt=excerpt(response.text),
            )
        raise gmail_error(response.status_code, response.text)


def gmail_error(status: int, text: str) -> ChannelError:
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    reasons = {str(e.get("reason", "")) for e in error.get("errors", []) if isinstance(e, dict)}
    said = str(error.get("message") or text[:200] or f"HTTP {status}")
    code = next(iter(sorted(reasons - {""})), "") or str(error.get("status", "")) or f"http_{status}"
    common = {"code": code, "response_code": status, "response_excerpt": excerpt(text)}
    if status == 401:
        return ChannelError(
            f"Google refused a freshly issued access token ({said}); reconnect the Gmail mailbox.",
            permanent=True,
            **common,
        )
    if status == 403 and reasons & RATE_REASONS:
        return ChannelError(f"Gmail's sending rate limit was reached ({said}); will retry.", permanent=False, **common)
    if status == 403 and ("insufficientPermissions" in reasons or "SCOPE_INSUFFICIENT" in text):
        return ChannelError(
            "The Gmail mailbox was connected without permission to send mail (the gmail.send scope); "
            "reconnect it and grant sending.",
            permanent=True,
            **common,
        )
    if status == 403 and "domainPolicy" in reasons:
        return ChannelError(
            "The Google Workspace administrator does not allow this app to use the mailbox.", permanent=True, **common
        )
    return ChannelError(f"Gmail refused the message ({status}): {said}", permanent=True, **common)


def retry_after_from_text(text: str) -> float | None:
    found = RETRY_AFTER_TEXT.search(text or "")
    if not found:
        return None
    at = datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))
    return max(0.0, (at - datetime.now(UTC)).total_seconds())
