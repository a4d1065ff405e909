"""Web push (RFC 8030) to a browser's push service, encrypted (RFC 8291, aes128gcm) and
signed with VAPID (RFC 8292), through pywebpush on this backend's session.

The address is the browser's ``PushSubscription.toJSON()`` as a string:
``{"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}``. OPTIONS:

- ``VAPID_PRIVATE_KEY``: the P-256 private key whose public half the site passed to
  ``pushManager.subscribe({applicationServerKey})``, as PEM or as the base64url raw or DER
  key pywebpush accepts;
- ``VAPID_SUBJECT``: a ``mailto:`` or ``https:`` contact for the push service's operators;
- ``TTL``: seconds the push service keeps a message for an offline browser (86400);
- ``URGENCY``: "very-low", "low", "normal" (default) or "high".

``data`` keys read: ``title`` (else the subject), ``link`` (sent as ``url``), ``icon``,
``image``. The service worker receives ``{"title", "body", "url", "icon", "image", "tag"}``
with ``tag`` the ledger message id.

A 201 from the push service means it accepted the message for delivery, not that the
browser received or showed it; push services send no receipts.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt, retry_after_seconds
from channels.errors import ChannelError, OutcomeUnknown

URGENCIES = ("very-low", "low", "normal", "high")
# 4096 bytes per push message, less the aes128gcm header (86), tag (16) and delimiter (1).
MAX_PLAINTEXT = 3993


class Answer(NamedTuple):
    response: requests.Response
    message: OutgoingMessage
    endpoint: str


class WebPushBackend(HttpChannelBackend):
    kind: ClassVar[str] = "web_push"
    required_options: ClassVar[tuple[str, ...]] = ("VAPID_PRIVATE_KEY", "VAPID_SUBJECT")

    def __init__(self, alias: str, options: Any) -> None:
        super().__init__(alias, options)
        self._vapid: Vapid | None = None

    @property
    def vapid(self) -> Vapid:
        if self._vapid is None:
            self._vapid = load_vapid_key(str(self.options.get("VAPID_PRIVATE_KEY") or ""))
        return self._vapid

    @property
    def application_server_key(self) -> str:
        """The public key a site subscribes with, base64url as ``subscribe()`` takes it."""
        raw = self.vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def validate_address(self, address: str) -> str:
        address = super().validate_address(address)
        problem = subscription_problem(address)
        if problem:
            raise ChannelError(
                f"The web push subscription is unusable: {problem}.",
                permanent=True,
                suppress_address=True,
                dead_reason="invalid_address",
                code="invalid_subscription",
            )
        return address

    def build_payload(self, message: OutgoingMessage) -> bytes:
        extras = message.data
        fields = {
            "title": extras.get("title") or message.subject,
            "body": message.text,
            "url": extras.get("link"),
            "icon": extras.get("icon"),
            "image": extras.get("image"),
            "tag": str(message.id),
        }
        payload = json.dumps({k: v for k, v in fields.items() if v}, ensure_ascii=False).encode()
        if len(payload) > MAX_PLAINTEXT:
            raise ChannelError(
                f"The web push payload is {len(payload)} bytes; push services take at most {MAX_PLAINTEXT}. "
                "Shorten the title or body.",
                permanent=True,
                code="too_large",
            )
        return payload

    def post(self, payload: bytes, message: OutgoingMessage) -> Answer:
        subscription = json.loads(message.address)
        endpoint = subscription["endpoint"]
        pusher = WebPusher(subscription, requests_session=self.session)
        try:
            response = pusher.send(
                payload,
                self.vapid_headers(endpoint),
                ttl=int(self.options.get("TTL", 86400)),
                content_encoding="aes128gcm",
                timeout=self.timeout,
            )
        except requests.ConnectTimeout as exc:
            raise ChannelError(f"Could not connect to the push service in time ({exc}).", permanent=False) from None
        except requests.ReadTimeout:
            raise OutcomeUnknown("The push service did not answer in time; the message may have been sent.") from None
        except requests.ConnectionError as exc:
            raise ChannelError(f"Could not reach the push service ({exc}).", permanent=False) from None
        return Answer(response, message, endpoint)

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        claims = {
            "sub": str(self.options["VAPID_SUBJECT"]),
            "aud": f"{parts.scheme}://{parts.netloc}",
            # RFC 8292 caps exp at 24 hours; push services reject a token that lives longer.
            "exp": int(time.time()) + 12 * 3600,
        }
        try:
            headers = dict(self.vapid.sign(claims))
        except VapidException as exc:
            raise ChannelError(f"Cannot sign for VAPID: {exc}", permanent=True, code="misconfigured") from None
        headers["Urgency"] = str(self.options.get("URGENCY") or "normal")
        return headers

    def parse_response(self, answer: Answer) -> SendResult:
        response = answer.response
        status = response.status_code
        if status in (200, 201, 202):
            suffix = f"#{answer.message.id}"
            provider_id = response.headers.get("Location") or answer.endpoint[: 300 - len(suffix)] + suffix
            return SendResult(provider_message_id=provider_id, response_code=status)
        said = excerpt(response.text.strip(), 300) or response.reason or "no detail"
        error: dict[str, Any] = {
            "code": f"http_{status}",
            "response_code": status,
            "response_excerpt": excerpt(response.text),
        }
        if status == 429 or status >= 500:
            raise ChannelError(
                f"The push service answered {status} ({said}); will retry.",
                permanent=False,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                **error,
            )
        if status in (404, 410):
            raise ChannelError(
                f"The push service says this subscription is gone ({status}): the visitor unsubscribed, "
                "or the browser dropped it.",
                permanent=True,
                suppress_address=True,
                dead_reason="unregistered",
                **error,
            )
        raise ChannelError(self._explain(status, said), permanent=True, **error)

    def _explain(self, status: int, said: str) -> str:
        if status == 413:
            return f"The push service says the message is too large (413: {said}). Shorten the title or body."
        if status in (401, 403):
            return (
                f"The push service refused our VAPID signature ({status}: {said}). Most often the subscription was "
                f"made with another applicationServerKey than this backend's {self.application_server_key}; "
                "check VAPID_PRIVATE_KEY and that VAPID_SUBJECT is a mailto: or https: URL."
            )
        return f"The push service rejected the message ({status}: {said})."

    def check(self) -> list[str]:
        problems = super().check()
        if self.options.get("VAPID_PRIVATE_KEY"):
            try:
                self.vapid
            except ChannelError as exc:
                problems.append(f"has a bad VAPID_PRIVATE_KEY: {exc.message.rstrip('.')}")
        subject = str(self.options.get("VAPID_SUBJECT") or "")
        if subject and not subject.startswith(("mailto:", "https://")):
            problems.append(f"has a VAPID_SUBJECT {subject!r} that is not a mailto: or https: URL")
        urgency = self.options.get("URGENCY")
        if urgency and urgency not in URGENCIES:
            problems.append(f"has URGENCY {urgency!r}; use one of {', '.join(URGENCIES)}")
        return problems


def load_vapid_key(text: str) -> Vapid:
    """A VAPID key from PEM (SEC1 or PKCS#8) or pywebpush's base64url raw/DER forms."""
    try:
        if "-----BEGIN" in text:
            vapid = Vapid(load_pem_private_key(text.strip().encode(), password=None))
        else:
            vapid = Vapid.from_string(text.strip())
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise ChannelError(
            f"VAPID_PRIVATE_KEY is not a readable key ({exc}).", permanent=True, code="misconfigured"
        ) from None
    key = vapid.private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ChannelError("VAPID_PRIVATE_KEY is not a P-256 (prime256v1) key.", permanent=True, code="misconfigured")
    return vapid


def subscription_problem(address: str) -> str:
    """What is wrong with a PushSubscription JSON, or "" when it can be sent to."""
    try:
        subscription = json.loads(address)
    except ValueError:
        return "it is not JSON"
    if not isinstance(subscription, dict):
        return "it is not a JSON object"
    endpoint = subscription.get("endpoint")
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme != "https" or not urlsplit(endpoint).netloc:
        return "its endpoint is not an https URL"
    keys = subscription.get("keys")
    if not isinstance(keys, dict) or not isinstance(keys.get("p256dh"), str) or not isinstance(keys.get("auth"), str):
        return "it has no keys.p256dh and keys.auth"
    try:
        point = _b64url(keys["p256dh"])
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(point) != 65:
            raise ValueError
    except (ValueError, binascii.Error):
        return "keys.p256dh is not a P-256 public key"
    try:
        if len(_b64url(keys["auth"])) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        return "keys.auth is not a 16-byte secret"
    return ""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
