"""SMS through Vonage's SMS API (formerly Nexmo).

    POST https://rest.nexmo.com/sms/json
    form fields api_key, api_secret, from, to, text, type, client-ref, callback

OPTIONS: ``API_KEY``, ``API_SECRET``; ``FROM`` (a Vonage number in E.164, or an
alphanumeric sender ID where the destination country allows one); ``CALLBACK_URL`` (the
public URL of ``/channels/receipts/<alias>/``, default ``HERALD_PUBLIC_URL`` + that path);
``DEFAULT_REGION`` for numbers stored without ``+``; ``RATE_LIMIT`` (default 30/s, Vonage's
default throughput per API key).

Receipts are never taken unauthenticated. With ``SIGNATURE_SECRET`` (signed webhooks,
which Vonage support turns on for the account) each receipt's ``sig`` is checked with
``SIGNATURE_METHOD``: "md5hash" (Vonage's default) or the HMAC methods "md5", "sha1",
"sha256", "sha512", as chosen in the dashboard. Without it, ``RECEIPT_TOKEN`` is put in the
callback URL (``?token=...``) and every receipt must carry it (the token is not stored
with the receipt). Receipts may come as GET, POST or POST-JSON.

``data`` keys read: none; an SMS is its text.

Limits: a text longer than one SMS goes as several parts, each with its own message id and
receipt; the ledger keeps the first accepted part's id, so that part's receipts move the
message and the others find no message. There is no status lookup: a send that timed out
never learned its message id, so its outcome waits for a person.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote

import requests
from django.http import HttpRequest

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.backends.sms import PhoneAddressMixin, receipt_url
from channels.errors import ChannelError, OutcomeUnknown
from channels.receipts import ReceiptEvent, ReceiptRejected, ReceiptsMixin, ReceiptUnreadable

SMS_URL = "https://rest.nexmo.com/sms/json"
CLIENT_REF_MAX = 40
THROTTLED_WAIT = 1.0
# The SMS API's status codes: permanent?, dead reason, what it means for the shop.
SEND_ERRORS: dict[str, tuple[bool, str | None, str]] = {
    "1": (False, None, "Vonage throttled the account (sending faster than its limit); will retry"),
    "2": (True, None, "Vonage says the request lacks a parameter"),
    "3": (True, None, "Vonage says a parameter is invalid"),
    "4": (True, None, "Vonage rejected the credentials; check API_KEY and API_SECRET"),
    "5": (False, None, "Vonage had an internal error; will retry"),
    "6": (True, "invalid_address", "Vonage cannot route to the number (an unrecognised prefix)"),
    "7": (True, "opted_out", "The number is on Vonage's barred list and may not receive messages"),
    "8": (True, None, "Vonage has suspended the account; contact Vonage support"),
    "9": (True, None, "The Vonage account has too little credit; top it up, then resend"),
    "10": (False, None, "Too many connections to Vonage; will retry"),
    "15": (
        True,
        None,
        "Vonage does not allow FROM as the sender for this destination; use a Vonage number or a sender ID "
        "the country allows",
    ),
    "29": (
        True,
        None,
        "The Vonage account is in demo mode and the number is not one of its test numbers; add it, "
        "or top up the account",
    ),
    "33": (True, "invalid_address", "The number is de-activated and may not receive messages"),
}
DLR_EVENTS = {
    "delivered": "delivered",
    "expired": "failed",
    "failed": "failed",
    "rejected": "failed",
    "accepted": "sent",
    "buffered": "sent",
}
# A delivery receipt's err-code: Vonage's meaning, and the dead reason where it says the
# number should be removed.
DLR_ERRORS: dict[str, tuple[str, str | None]] = {
    "1": ("unknown", None),
    "2": ("absent subscriber, temporary", None),
    "3": ("absent subscriber, permanent: the number is no longer active", "invalid_address"),
    "4": ("call barred by the user", "opted_out"),
    "5": ("portability error", None),
    "6": ("anti-spam rejection", None),
    "7": ("handset busy", None),
    "8": ("network error", None),
    "9": ("illegal number: the user asked not to receive messages from this service", "opted_out"),
    "10": ("illegal message", None),
    "11": ("unroutable", None),
    "12": ("destination unreachable", None),
    "13": ("subscriber age restriction", None),
    "14": ("number blocked by the carrier", None),
    "15": ("prepaid subscriber with insufficient funds", None),
    "16": ("gateway quota exceeded", None),
    "50": ("entity filter", None),
    "51": ("header filter", None),
    "52": ("content filter", None),
    "53": ("consent filter", None),
    "54": ("regulation error", None),
    "99": ("general error", None),
}
SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
# GSM 03.38, the basic set and its extension table: text outside it must go as UCS-2,
# where one SMS holds 70 characters instead of 160.
GSM_CHARACTERS = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà" + "\f^{}\\[~]|€"
)


def client_ref(idempotency_key: str) -> str:
    """Our key as Vonage's client-ref (at most 40 characters): a longer key is hashed."""
    if len(idempotency_key) <= CLIENT_REF_MAX:
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:CLIENT_REF_MAX]


def vonage_signature(secret: str, method: str, params: Mapping[str, Any]) -> str:
    """Vonage's ``sig``: "&name=value" for each parameter but sig, sorted by name, with "&"
    and "=" in values replaced by "_"; then MD5 of that followed by the secret ("md5hash"),
    or its HMAC keyed with the secret (the other methods). Lower-case hex."""
    data = "".join(
        f"&{name}={str(value).replace('&', '_').replace('=', '_')}"
        for name, value in sorted(params.items())
        if name != "sig"
    )
    if method == "md5hash":
        return hashlib.md5((data + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), data.encode(), method).hexdigest()


class VonageBackend(ReceiptsMixin, PhoneAddressMixin, HttpChannelBackend):
    kind: ClassVar[str] = "sms"
    required_options: ClassVar[tuple[str, ...]] = ("API_KEY", "API_SECRET", "FROM")
    default_rate_limit: ClassVar[str | None] = "30/s"
    # Vonage can send receipts as GET (its dashboard's default); the view stores them too.
    receipts_by_get: ClassVar[bool] = True

    # --- sending ---------------------------------------------------------------------
    def endpoint(self, message: OutgoingMessage) -> str:
        return SMS_URL

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {}  # a form: requests sets the Content-Type

    def request_kwargs(self, payload: Any, message: OutgoingMessage) -> dict[str, Any]:
        return {"data": payload}

    def build_payload(self, message: OutgoingMessage) -> dict[str, str]:
        text = self.sms_text(message)
        sender = str(self.options["FROM"])
        return {
            "api_key": self.options["API_KEY"],
            "api_secret": self.options["API_SECRET"],
            # Vonage takes numbers as E.164 digits without the "+".
            "from": sender[1:] if re.fullmatch(r"\+\d+", sender) else sender,
            "to": message.address.removeprefix("+"),
            "text": text,
            "type": "text" if set(text) <= GSM_CHARACTERS else "unicode",
            "client-ref": client_ref(message.idempotency_key),
            "callback": self.callback_url(),
        }

    def parse_response(self, answer: requests.Response) -> SendResult:
        body = self.json_or_error(answer)
        if answer.status_code >= 300 or not isinstance(body, dict):
            raise ChannelError(
                f"Vonage answered {answer.status_code}: {excerpt(answer.text, 300)}",
                permanent=True,
                response_code=answer.status_code,
                response_excerpt=excerpt(answer.text),
            )
        parts = body.get("messages") or []
        accepted = [part for part in parts if str(part.get("status")) == "0"]
        if accepted:
            # Once one part of a long text is out, sending again would repeat it.
            return SendResult(
                provider_message_id=str(accepted[0].get("message-id", "")),
                response_code=answer.status_code,
                response_excerpt=excerpt(answer.text),
            )
        if not parts:
            raise OutcomeUnknown("Vonage answered without a status for the message; it may have been sent.")
        code = str(parts[0].get("status"))
        permanent, dead, advice = SEND_ERRORS.get(code, (True, None, "Vonage refused the message"))
        raise ChannelError(
            f"{advice}: {str(parts[0].get('error-text') or 'no reason given').rstrip('.')} (status {code}).",
            permanent=permanent,
            retry_after=THROTTLED_WAIT if code == "1" else None,
            suppress_address=dead is not None,
            dead_reason=dead or "invalid_address",
            code=code,
            response_code=answer.status_code,
            response_excerpt=excerpt(answer.text),
        )

    def callback_url(self) -> str:
        url = str(self.options.get("CALLBACK_URL") or receipt_url(self.alias))
        token = self.options.get("RECEIPT_TOKEN")
        if token and not self.options.get("SIGNATURE_SECRET") and "token=" not in url:
            url += ("&" if "?" in url else "?") + "token=" + quote(str(token), safe="")
        return url

    def check(self) -> list[str]:
        problems = super().check()
        if not self.options.get("SIGNATURE_SECRET") and not self.options.get("RECEIPT_TOKEN"):
            problems.append(
                "needs SIGNATURE_SECRET (signed webhooks) or RECEIPT_TOKEN to authenticate delivery receipts"
            )
        method = self.options.get("SIGNATURE_METHOD", "md5hash")
        if method not in SIGNATURE_METHODS:
            problems.append(f"has SIGNATURE_METHOD {method!r}; use one of {', '.join(SIGNATURE_METHODS)}")
        return problems

    # --- receipts ----------------------------------------------------------------------
    def verify_receipt(self, request: HttpRequest, body: bytes) -> None:
        query = request.META.get("QUERY_STRING", "")
        secret = self.options.get("SIGNATURE_SECRET")
        if secret:
            try:
                params = _receipt_params(body, query)
            except ReceiptUnreadable as exc:
                raise ReceiptRejected(401, f"Cannot check the signature of an unreadable receipt: {exc}") from None
            given = str(params.get("sig", "")).lower()
            if not given:
                raise ReceiptRejected(
                    401, "The receipt has no sig; SIGNATURE_SECRET is set, so Vonage must sign receipts."
                )
            expected = vonage_signature(secret, self.options.get("SIGNATURE_METHOD", "md5hash"), params)
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise ReceiptRejected(
                    401, "The receipt's sig does not match; check SIGNATURE_SECRET and SIGNATURE_METHOD."
                )
            return
        token = str(self.options.get("RECEIPT_TOKEN") or "")
        if not token:
            raise ReceiptRejected(401, "Receipts are not taken unauthenticated; set SIGNATURE_SECRET or RECEIPT_TOKEN.")
        given = dict(parse_qsl(query)).get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ReceiptRejected(
                401, "The receipt's token is missing or wrong; the callback URL must end in ?token=<RECEIPT_TOKEN>."
            )

    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        params = _receipt_params(body, query)
        status, message_id = str(params.get("status", "")), str(params.get("messageId", ""))
        if not status or not message_id:
            raise ReceiptUnreadable("Not a Vonage delivery receipt: it has no messageId and status.")
        kind = DLR_EVENTS.get(status)
        if kind is None:
            return []  # "unknown": Vonage could not tell
        code = str(params.get("err-code", ""))
        meaning, dead = DLR_ERRORS.get(code, ("undocumented", None))
        detail = f"Vonage: {status}" + (f" (err-code {code}: {meaning})" if code not in ("", "0") else "")
        return [
            ReceiptEvent(
                kind=kind,
                provider_message_id=message_id,
                occurred_at=_timestamp(str(params.get("message-timestamp", ""))),
                provider_event_id=f"{message_id}:{status}",
                detail=detail,
                address_dead=dead if kind == "failed" else None,
                raw=params,
            )
        ]


def _receipt_params(body: bytes, query: str) -> dict[str, Any]:
    """A receipt's parameters: the JSON or form body of a POST, else the query string
    (less our own token, which Vonage does not sign)."""
    if not body.strip():
        return {name: value for name, value in parse_qsl(query) if name != "token"}
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ReceiptUnreadable("The receipt is not valid JSON.") from None
        return dict(data)
    return dict(parse_qsl(text, keep_blank_values=True))


def _timestamp(text: str) -> datetime | None:
    """``message-timestamp`` is "YYYY-MM-DD HH:MM:SS" in UTC."""
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
