"""Web push against RFC 8030/8291/8292: a real subscription key pair made here, the
VAPID-signed, aes128gcm-encrypted request the push service receives, and its answers."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import timedelta
from typing import Any

import http_ece
import pytest
import requests
import responses
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.utils import timezone

from channels import signals
from channels.actions import deliver_message, send_message
from channels.backends.webpush import WebPushBackend
from channels.models import Message, MessageStatus

pytestmark = pytest.mark.django_db

ENDPOINT = (
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABmQ3xTz8kR1vNfW0c9pLq2YhE7sJd4uTg6bXo5iKa3MlZr"
    "Hn8yWe1QvDf0CjUx7tPs2GbLk9oRiEm4qYa6N"
)
LOCATION = "https://updates.push.services.mozilla.com/m/gAAAAABmQ3xU4nVb7Kp2Rz9sTq1LwXe5Yd8cJh0uFi3GoMa6"
SUBJECT = "mailto:push@shop.example.com"


def public_key(key: ec.EllipticCurvePrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def browser() -> dict[str, Any]:
    """What a browser holds for one subscription: its ECDH key pair and auth secret."""
    key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    keys = {"p256dh": public_key(key), "auth": b64url(auth)}
    subscription = {"endpoint": ENDPOINT, "expirationTime": None, "keys": keys}
    return {"key": key, "auth": auth, "address": json.dumps(subscription)}


@pytest.fixture
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def push(settings: Any, vapid_key: ec.EllipticCurvePrivateKey) -> Any:
    # "-----BEGIN EC PRIVATE KEY-----", as `openssl ecparam -genkey -name prime256v1` writes it.
    pem = vapid_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    settings.CHANNEL_BACKENDS = {
        **settings.CHANNEL_BACKENDS,
        "web_push": {
            "BACKEND": "channels.backends.webpush.WebPushBackend",
            "OPTIONS": {"VAPID_PRIVATE_KEY": pem, "VAPID_SUBJECT": SUBJECT, "URGENCY": "high"},
        },
    }
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def dead() -> Any:
    seen: list[tuple[str, str, str]] = []

    def handler(sender: Any, **kw: Any) -> None:
        seen.append((kw["kind"], kw["address"], kw["reason"]))

    signals.address_dead.connect(handler, weak=False, dispatch_uid="test-webpush-dead")
    yield seen
    signals.address_dead.disconnect(dispatch_uid="test-webpush-dead")


def queue(address: str, key: str = "k1", now: Any = None) -> Message:
    return send_message(
        kind="web_push",
        address=address,
        subject="Order #1001",
        text="Your order is on its way.",
        data={
            "title": "Shipped!",
            "link": "https://shop.example.com/orders/1001",
            "icon": "https://shop.example.com/i.png",
        },
        idempotency_key=key,
        now=now,
    )


def test_the_push_service_gets_a_vapid_signed_aes128gcm_message_the_browser_can_decrypt(push, browser, vapid_key):
    push.post(ENDPOINT, status=201, headers={"Location": LOCATION})
    message = queue(browser["address"])
    assert deliver_message(message_id=message.pk).startswith("sent")

    request = push.calls[0].request
    assert request.url == ENDPOINT
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert request.headers["TTL"] == "86400"
    assert request.headers["Urgency"] == "high"

    scheme, _, params = request.headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key(vapid_key)
    header, claims, signature = fields["t"].split(".")
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    claims = json.loads(unb64url(claims))
    assert claims["aud"] == "https://updates.push.services.mozilla.com"
    assert claims["sub"] == SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    raw = unb64url(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    vapid_key.public_key().verify(der, f"{header}.{fields['t'].split('.')[1]}".encode(), ec.ECDSA(hashes.SHA256()))

    plaintext = http_ece.decrypt(
        request.body, private_key=browser["key"], auth_secret=browser["auth"], version="aes128gcm"
    )
    assert json.loads(plaintext) == {
        "title": "Shipped!",
        "body": "Your order is on its way.",
        "url": "https://shop.example.com/orders/1001",
        "icon": "https://shop.example.com/i.png",
        "tag": str(message.pk),
    }
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, LOCATION)


def test_without_a_location_the_provider_id_is_the_endpoint_and_the_ledger_id(push, browser):
    push.post(ENDPOINT, status=201)
    message = queue(browser["address"])
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.provider_message_id == f"{ENDPOINT}#{message.pk}"


# Autopush's error bodies (https://mozilla-services.github.io/autopush-rs/errors.html).
GONE = {
    404: {"code": 404, "errno": 102, "error": "Not Found", "message": "Request did not validate invalid token"},
    410: {"code": 410, "errno": 106, "error": "Gone", "message": "Request did not validate No such subscription"},
}


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_fails_and_is_reported_dead(
    push, browser, dead, django_capture_on_commit_callbacks, status
):
    push.post(ENDPOINT, status=status, json={**GONE[status], "more_info": "https://autopush.readthedocs.io/"})
    message = queue(browser["address"])
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "subscription is gone" in message.error
    assert dead == [("web_push", browser["address"], "unregistered")]


def test_a_rate_limited_push_is_retried_after_retry_after(push, browser):
    push.post(ENDPOINT, status=429, headers={"Retry-After": "30"}, body="Too Many Requests")
    push.post(ENDPOINT, status=201)
    now = timezone.now()
    message = queue(browser["address"], now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert (message.status, message.next_attempt_at) == (MessageStatus.QUEUED, now + timedelta(seconds=30))
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=30)).startswith("sent")


def test_a_push_service_outage_is_retried(push, browser, dead):
    push.post(ENDPOINT, status=503, body="Service Unavailable")
    now = timezone.now()
    message = queue(browser["address"], now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert dead == []


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (403, "the key in the authorization header does not correspond to the sender ID used to subscribe this user",
         "another applicationServerKey than this backend's"),
        (401, '{"code": 401, "errno": 109, "error": "Unauthorized", "message": "Request did not validate"}',
         "refused our VAPID signature (401"),
        (413, '{"code": 413, "errno": 104, "error": "Payload Too Large", "message": "Data payload too large"}',
         "too large"),
        (400, '{"code": 400, "errno": 110, "error": "Bad Request", "message": "Invalid crypto keys specified"}',
         "rejected the message (400: {"),
    ],
)
def test_refusals_fail_without_touching_the_subscription(
    push, browser, dead, django_capture_on_commit_callbacks, status, body, says
):
    push.post(ENDPOINT, status=status, body=body)
    message = queue(browser["address"])
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert says in message.error
    assert dead == []


def test_the_vapid_error_names_the_public_key_to_subscribe_with(push, browser, vapid_key):
    push.post(ENDPOINT, status=403, body="")
    message = queue(browser["address"])
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert public_key(vapid_key) in message.error


def test_a_push_service_that_never_answers_leaves_the_outcome_unknown(push, browser):
    push.post(ENDPOINT, body=requests.ReadTimeout("no answer"))
    message = queue(browser["address"])
    assert deliver_message(message_id=message.pk) == "unknown"


def bad(browser_address: str, **changes: Any) -> str:
    subscription = json.loads(browser_address)
    subscription.update(changes)
    return json.dumps(subscription)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda a: a[:-40], "not JSON"),
        (lambda a: bad(a, endpoint="http://updates.push.services.mozilla.com/wpush/v2/x"), "not an https URL"),
        (lambda a: bad(a, keys={"auth": "c2VjcmV0c2VjcmV0c2VjcmV0"}), "no keys.p256dh and keys.auth"),
        (lambda a: bad(a, keys={"p256dh": b64url(b"\x04" + b"\x01" * 64), "auth": b64url(b"a" * 16)}), "not a P-256"),
        (lambda a: bad(a, keys={**json.loads(a)["keys"], "auth": b64url(b"short")}), "not a 16-byte secret"),
    ],
)
def test_a_bad_subscription_fails_as_an_invalid_address_without_a_request(
    push, browser, dead, django_capture_on_commit_callbacks, make, says
):
    address = make(browser["address"])
    message = queue(address)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "invalid_subscription")
    assert says in message.error
    assert dead == [("web_push", address, "invalid_address")]
    assert len(push.calls) == 0


def test_a_payload_over_the_push_size_limit_fails_without_a_request(push, browser):
    message = send_message(kind="web_push", address=browser["address"], text="x" * 5000, idempotency_key="big")
    assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert message.error_code == "too_large"
    assert len(push.calls) == 0


def pkcs8_pem(key: ec.EllipticCurvePrivateKey) -> str:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()).decode()


def raw_b64url(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.mark.parametrize("form", [pkcs8_pem, raw_b64url])
def test_a_pkcs8_pem_or_raw_base64url_vapid_key_is_accepted(vapid_key, form):
    backend = WebPushBackend("wp", {"VAPID_PRIVATE_KEY": form(vapid_key), "VAPID_SUBJECT": SUBJECT})
    assert backend.check() == []
    assert backend.application_server_key == public_key(vapid_key)


def test_check_names_a_bad_key_subject_and_urgency():
    options = {"VAPID_PRIVATE_KEY": "not a key", "VAPID_SUBJECT": "shop@example.com", "URGENCY": "now"}
    backend = WebPushBackend("wp", options)
    problems = backend.check()
    assert problems[0].startswith("has a bad VAPID_PRIVATE_KEY: VAPID_PRIVATE_KEY is not a readable key")
    assert problems[1:] == [
        "has a VAPID_SUBJECT 'shop@example.com' that is not a mailto: or https: URL",
        "has URGENCY 'now'; use one of very-low, low, normal, high",
    ]
    p384 = pkcs8_pem(ec.generate_private_key(ec.SECP384R1()))
    assert WebPushBackend("wp", {"VAPID_PRIVATE_KEY": p384, "VAPID_SUBJECT": SUBJECT}).check() == [
        "has a bad VAPID_PRIVATE_KEY: VAPID_PRIVATE_KEY is not a P-256 (prime256v1) key"
    ]
    assert WebPushBackend("wp", {}).check() == [
        "is missing the option VAPID_PRIVATE_KEY",
        "is missing the option VAPID_SUBJECT",
    ]
