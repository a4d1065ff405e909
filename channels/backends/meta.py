"""What the two Meta backends share: the Graph API's error shape and the webhook.

WhatsApp Cloud API and Messenger both answer errors as
``{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}``
and both deliver webhooks the same way:

- a subscription check, ``GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..``,
  answered with the challenge as plain text when the token is ours (option
  ``VERIFY_TOKEN``, the string typed into the app dashboard);
- a signed ``POST``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body keyed
  with the app secret>`` (option ``APP_SECRET``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from django.http import HttpRequest, HttpResponse

from channels.backends.base import excerpt
from channels.errors import ChannelError
from channels.receipts import ReceiptRejected, ReceiptsMixin, ReceiptUnreadable

GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"

# An error table maps Meta's ``code`` (or ``(code, error_subcode)``, looked up first) to
# (permanent?, dead reason or None, advice for staff).
ErrorTable = dict[int | tuple[int, int], tuple[bool, str | None, str]]

# The Graph API's own codes, shared by every Meta product. The rate limits (4 app, 32
# Page, 613 custom) ask for backoff without saying how long.
GRAPH_ERRORS: ErrorTable = {
    2: (False, None, "Meta's API is temporarily unavailable; will retry"),
    4: (False, None, "The app reached its Graph API request limit; will retry"),
    32: (False, None, "The Page reached its Graph API request limit; will retry"),
    613: (False, None, "Meta's rate limit for this call is reached; will retry"),
}


@dataclass(frozen=True)
class GraphError:
    code: int | None
    subcode: int | None
    message: str
    details: str
    status: int
    body: str

    def fail(self, text: str, *, permanent: bool = True, **extra: Any) -> ChannelError:
        """A ``ChannelError`` carrying Meta's code, the HTTP status and the answer."""
        return ChannelError(
            text,
            permanent=permanent,
            code=str(self.code if self.code is not None else self.status),
            response_code=self.status,
            response_excerpt=self.body,
            **extra,
        )

    @property
    def words(self) -> str:
        """Meta's own explanation, the most specific part first."""
        return self.details or self.message or f"HTTP {self.status}"

    def mapped(self, table: ErrorTable, product: str) -> ChannelError:
        """The ``ChannelError`` that ``table`` (then the Graph API's own codes) gives for
        this error; an unknown code is permanent."""
        found = None
        if self.code is not None and self.subcode is not None:
            found = table.get((self.code, self.subcode))
        if found is None and self.code is not None:
            found = table.get(self.code) or GRAPH_ERRORS.get(self.code)
        permanent, dead, advice = found or (True, None, f"{product} refused the message")
        number = self.code if self.code is not None else self.status
        return self.fail(
            f"{advice} ({number}). {product} says: {self.words}",
            permanent=permanent,
            suppress_address=dead is not None,
            dead_reason=dead or "invalid_address",
        )


def graph_error(answer: requests.Response) -> GraphError | None:
    """The Graph API error in an answer, or None when the answer is a success."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if answer.status_code < 400 and not isinstance(error, dict):
        return None
    error = error if isinstance(error, dict) else {}
    data = error.get("error_data")
    details = data.get("details", "") if isinstance(data, dict) else ""
    return GraphError(
        code=_int(error.get("code")),
        subcode=_int(error.get("error_subcode")),
        message=str(error.get("message") or ""),
        details=str(details or ""),
        status=answer.status_code,
        body=excerpt(answer.text),
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def unix_time(value: Any, *, milliseconds: bool = False) -> datetime | None:
    """A Unix timestamp (seconds, or milliseconds) as an aware UTC datetime."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(number / 1000 if milliseconds else number, tz=UTC)


def load_webhook(body: bytes, expected_object: str) -> list[dict[str, Any]]:
    """The ``entry`` list of a Meta webhook body; raises ``ReceiptUnreadable``."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ReceiptUnreadable("The webhook body is not JSON.") from None
    if not isinstance(data, dict) or data.get("object") != expected_object:
        found = data.get("object") if isinstance(data, dict) else type(data).__name__
        raise ReceiptUnreadable(f"Expected a webhook about {expected_object!r}, got {found!r}.")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise ReceiptUnreadable("The webhook has no entry list.")
    return [entry for entry in entries if isinstance(entry, dict)]


class MetaWebhookMixin(ReceiptsMixin):
    """Signature check and subscription handshake of a Meta webhook."""

    options: dict[str, Any]

    def verify_receipt(self, request: HttpRequest, body: bytes) -> None:
        secret = str(self.options.get("APP_SECRET") or "")
        if not secret:
            raise ReceiptRejected(401, "APP_SECRET is not configured, so no webhook can be verified.")
        given = request.headers.get("X-Hub-Signature-256", "").strip()
        if not given:
            raise ReceiptRejected(401, "Missing the X-Hub-Signature-256 header.")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise ReceiptRejected(401, "X-Hub-Signature-256 does not match the body signed with APP_SECRET.")

    def receipt_handshake(self, request: HttpRequest) -> HttpResponse | None:
        if request.GET.get("hub.mode") != "subscribe":
            return None
        token = str(self.options.get("VERIFY_TOKEN") or "")
        given = request.GET.get("hub.verify_token", "")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(
                "hub.verify_token does not match VERIFY_TOKEN.", status=403, content_type="text/plain"
            )
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
