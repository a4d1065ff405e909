"""SMS through Twilio Programmable Messaging.

    POST https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json
    form fields To, From (or MessagingServiceSid), Body, StatusCallback; HTTP basic auth

OPTIONS: ``ACCOUNT_SID`` and ``AUTH_TOKEN`` (the token also signs Twilio's callbacks, so
it is needed even when ``API_KEY_SID`` / ``API_KEY_SECRET`` authenticate the sends);
``FROM`` (a Twilio number in E.164) or ``MESSAGING_SERVICE_SID``; ``STATUS_CALLBACK_URL``
(the public URL of ``/channels/receipts/<alias>/``, default ``HERALD_PUBLIC_URL`` + that
path); ``DEFAULT_REGION`` for numbers stored without ``+``; ``RATE_LIMIT`` (default one
message a second, the throughput of one long code).

``data`` keys read: none; an SMS is its text.

Receipts: status callbacks and inbound messages are form posts to the receipts URL, signed
with ``X-Twilio-Signature``. Point the number's (or Messaging Service's) "A message comes
in" webhook at the same URL so replies of STOP reach us as opt-outs.

Status lookup: a send that timed out has no Message SID, so the lookup lists the messages
sent to the number since yesterday (UTC) and takes the one outbound message with the same
text. It settles nothing while Twilio still queues the message (an unsent message has no
``date_sent`` to filter on), when two messages with the same text went to the number, or
when Smart Encoding rewrote the text; reconciliation then asks again, and a person decides
after the window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from django.http import HttpRequest, HttpResponse

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt, retry_after_seconds
from channels.backends.sms import PhoneAddressMixin, receipt_url
from channels.errors import ChannelError
from channels.receipts import ReceiptEvent, ReceiptRejected, ReceiptsMixin, ReceiptUnreadable

API = "https://api.twilio.com/2010-04-01/Accounts/{account}"

# Twilio's error dictionary, for the codes a send answers with: permanent?, dead reason, advice.
SEND_ERRORS: dict[int, tuple[bool, str | None, str]] = {
    21211: (True, "invalid_address", "Twilio says the number is not a valid phone number"),
    21610: (
        True,
        "opted_out",
        "The recipient replied STOP to this sender; Twilio sends them nothing until they reply START",
    ),
    21614: (True, "invalid_address", "Twilio says the number is not a mobile number and cannot receive SMS"),
    21408: (
        True,
        None,
        "Twilio's geo permissions block SMS to this country; allow it in the Twilio console under "
        "Messaging > Settings > Geo permissions",
    ),
    21606: (
        True,
        None,
        "The From number cannot send SMS to this destination; set FROM to an SMS-capable Twilio number "
        "or use MESSAGING_SERVICE_SID",
    ),
    21659: (True, None, "The From number is not a Twilio number of this account; check FROM"),
    20003: (
        True,
        None,
        "Twilio rejected the credentials; check ACCOUNT_SID and AUTH_TOKEN (or API_KEY_SID and API_KEY_SECRET)",
    ),
    20429: (False, None, "Twilio says we send too fast; will retry"),
    30001: (False, None, "Twilio's queue for this sender overflowed; will retry"),
}
# ErrorCode in a failed or undelivered status callback: meaning, dead reason.
RECEIPT_ERRORS: dict[str, tuple[str, str | None]] = {
    "30003": ("unreachable destination handset", "invalid_address"),
    "30004": ("message blocked by the recipient or carrier", "opted_out"),
    "30005": ("unknown destination handset", "invalid_address"),
    "30006": ("landline or unreachable carrier", "invalid_address"),
    "30007": ("filtered by the carrier as spam", None),
    "30008": ("unknown error", None),
    "21610": ("recipient unsubscribed with STOP", "opted_out"),
}
STATUS_EVENTS = {"sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed"}
LOOKUP_VERDICTS = {**STATUS_EVENTS, "canceled": "failed"}
# Twilio's default opt-out keywords for long codes; a reply of exactly one of them opts out.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL followed by every POST
    parameter's name and value, sorted by name (then value, for repeated names)."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class TwilioBackend(ReceiptsMixin, PhoneAddressMixin, HttpChannelBackend):
    kind: ClassVar[str] = "sms"
    required_options: ClassVar[tuple[str, ...]] = ("ACCOUNT_SID", "AUTH_TOKEN")
    default_rate_limit: ClassVar[str | None] = "1/s"
    supports_status_lookup: ClassVar[bool] = True

    # --- sending ---------------------------------------------------------------------
    def endpoint(self, message: OutgoingMessage) -> str:
        return self._api("/Messages.json")

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {}  # a form: requests sets the Content-Type

    def request_kwargs(self, payload: Any, message: OutgoingMessage) -> dict[str, Any]:
        return {"data": payload, "auth": self._auth()}

    def build_payload(self, message: OutgoingMessage) -> dict[str, str]:
        payload = {"To": message.address, "Body": self.sms_text(message), "StatusCallback": self.callback_url()}
        if self.options.get("MESSAGING_SERVICE_SID"):
            payload["MessagingServiceSid"] = self.options["MESSAGING_SERVICE_SID"]
        else:
            payload["From"] = self.options.get("FROM", "")
        return payload

    def parse_response(self, answer: requests.Response) -> SendResult:
        body = self.json_or_error(answer)
        if answer.status_code < 300 and body.get("sid"):
            return SendResult(
                provider_message_id=body["sid"], response_code=answer.status_code, response_excerpt=excerpt(answer.text)
            )
        code = body.get("code")
        refused = (True, None, "Twilio refused the message")
        permanent, dead, advice = SEND_ERRORS.get(code, refused)  # type: ignore[arg-type]
        raise ChannelError(
            f"{advice}: {str(body.get('message') or answer.reason).rstrip('.')} ({code}).",
            permanent=permanent,
            retry_after=None if permanent else retry_after_seconds(answer.headers.get("Retry-After")),
            suppress_address=dead is not None,
            dead_reason=dead or "invalid_address",
            code=str(code or answer.status_code),
            response_code=answer.status_code,
            response_excerpt=excerpt(answer.text),
        )

    def fetch_status(self, message: OutgoingMessage) -> str | None:
        if message.provider_message_id:
            found = [self._get(f"/Messages/{message.provider_message_id}.json")]
        else:
            found = self._find_by_text(message)
        if len(found) != 1:
            return None
        return LOOKUP_VERDICTS.get(found[0].get("status", ""))

    def _find_by_text(self, message: OutgoingMessage) -> list[dict[str, Any]]:
        since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        params = {"To": self.validate_address(message.address), "DateSent>": since, "PageSize": "50"}
        if self.options.get("FROM") and not self.options.get("MESSAGING_SERVICE_SID"):
            params["From"] = self.options["FROM"]
        listed = self._get("/Messages.json", params)
        return [
            found
            for found in listed.get("messages", [])
            if found.get("body") == message.text and str(found.get("direction", "")).startswith("outbound")
        ]

    def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        answer = self.session.get(self._api(path), params=params, auth=self._auth(), timeout=self.timeout)
        answer.raise_for_status()
        return dict(answer.json())

    def _api(self, path: str) -> str:
        return API.format(account=self.options["ACCOUNT_SID"]) + path

    def _auth(self) -> tuple[str, str]:
        if self.options.get("API_KEY_SID"):
            return (self.options["API_KEY_SID"], self.options.get("API_KEY_SECRET", ""))
        return (self.options["ACCOUNT_SID"], self.options["AUTH_TOKEN"])

    def callback_url(self) -> str:
        return str(self.options.get("STATUS_CALLBACK_URL") or receipt_url(self.alias))

    def check(self) -> list[str]:
        problems = super().check()
        if not self.options.get("FROM") and not self.options.get("MESSAGING_SERVICE_SID"):
            problems.append("needs FROM (a Twilio number such as '+15017122661') or MESSAGING_SERVICE_SID")
        if bool(self.options.get("API_KEY_SID")) != bool(self.options.get("API_KEY_SECRET")):
            problems.append("needs both API_KEY_SID and API_KEY_SECRET, or neither")
        url = str(self.options.get("STATUS_CALLBACK_URL") or "")
        if url and not url.startswith(("https://", "http://")):
            problems.append(f"has STATUS_CALLBACK_URL {url!r}, which is not an absolute http(s) URL")
        return problems

    # --- receipts ----------------------------------------------------------------------
    def verify_receipt(self, request: HttpRequest, body: bytes) -> None:
        given = request.headers.get("X-Twilio-Signature", "")
        if not given:
            raise ReceiptRejected(401, "Missing the X-Twilio-Signature header; Twilio signs every callback it sends.")
        params = _form(body)
        # A proxy in front of us may change the scheme, host or port Twilio signed.
        urls = _port_variants(self.callback_url()) + _port_variants(request.build_absolute_uri())
        token = self.options.get("AUTH_TOKEN", "")
        for url in dict.fromkeys(urls):
            if hmac.compare_digest(given.encode(), twilio_signature(token, url, params).encode()):
                return
        raise ReceiptRejected(
            401,
            "X-Twilio-Signature does not match; check AUTH_TOKEN, and set STATUS_CALLBACK_URL to the exact URL "
            f"Twilio calls (tried {', '.join(dict.fromkeys(urls))}).",
        )

    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        params = dict(_form(body))
        if params.get("MessageStatus"):
            return self._status_events(params)
        if "Body" in params or "OptOutType" in params:
            return _opt_out_events(params)
        raise ReceiptUnreadable("Neither a Twilio status callback (MessageStatus) nor an inbound message (Body).")

    def receipt_answer(self) -> HttpResponse:
        """Twilio reads the answer to an inbound message as TwiML; an empty one replies nothing."""
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")

    def _status_events(self, params: dict[str, str]) -> list[ReceiptEvent]:
        status = params["MessageStatus"]
        kind = STATUS_EVENTS.get(status)
        if kind is None:
            return []  # queued, accepted, sending, scheduled: nothing the ledger records
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not sid:
            raise ReceiptUnreadable(f"A Twilio status callback ({status}) without MessageSid.")
        code = params.get("ErrorCode", "")
        meaning, dead = RECEIPT_ERRORS.get(code, (f"see https://www.twilio.com/docs/errors/{code}", None))
        detail = f"Twilio: {status}" + (f" (error {code}: {meaning})" if code else "")
        return [
            ReceiptEvent(
                kind=kind,
                provider_message_id=sid,
                provider_event_id=f"{sid}:{status}",
                detail=detail,
                address_dead=dead if kind == "failed" else None,
                raw=params,
            )
        ]


def _opt_out_events(params: dict[str, str]) -> list[ReceiptEvent]:
    sender = params.get("From", "")
    said = params.get("Body", "").strip()
    # With Advanced Opt-Out, Twilio tells us what it made of the reply; trust it over our list.
    if "OptOutType" in params:
        opted_out = params["OptOutType"].upper() == "STOP"
    else:
        opted_out = said.upper() in OPT_OUT_KEYWORDS
    if not opted_out or not sender:
        return []
    detail = f'{sender} replied "{said[:40]}" to {params.get("To", "our number")}'
    return [ReceiptEvent(opt_out_address=sender, detail=detail, raw=params)]


def _form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _port_variants(url: str) -> list[str]:
    """The URL as given and with its default port added or removed: Twilio's own
    validators accept either, since a proxy may add or drop ``:443``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        other = host
    else:
        other = f"{host}:{443 if parts.scheme == 'https' else 80}"
    if parts.username:
        auth = parts.username + (f":{parts.password}" if parts.password else "") + "@"
        other = auth + other
    return [url, urlunsplit(parts._replace(netloc=other))]
