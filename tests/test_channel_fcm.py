"""FCM HTTP v1 against its documented API: the service account's JWT-bearer grant at
Google's token endpoint, the send request, and the mapping of FCM's error codes."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.utils import timezone

from channels import signals
from channels.actions import deliver_message, send_message
from channels.backends.fcm import FCMBackend
from channels.models import Message, MessageStatus
from tests.conftest import fixture_bytes, load_fixture

pytestmark = pytest.mark.django_db

TOKEN_URL = "https://oauth2.googleapis.com/token"
SEND_URL = "https://fcm.googleapis.com/v1/projects/herald-demo-shop/messages:send"
DEVICE = "dXk2pQ7LTm2:APA91bHqL3x9Yc0tVn4rJm8sKz1uWq5eRt7yUi0oPa2sDf4gHj6kLz8xCv1bNm3QwErTyUiOp"
FIRST_TOKEN = "ya29.c.c0AY_VpZiTestAccessTokenOneForHeraldTests"
SECOND_TOKEN = "ya29.c.c0AY_VpZiTestAccessTokenTwoForHeraldTests"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    # A throwaway key made for this run: the fixture file carries no private key.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def account(signing_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    info = load_fixture("fcm", "service_account.json")
    info["private_key"] = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return info


@pytest.fixture
def fcm(settings: Any, tmp_path: Path, account: dict[str, Any]) -> Any:
    key_file = tmp_path / "herald-demo-shop-firebase-adminsdk.json"
    key_file.write_text(json.dumps(account))
    settings.CHANNEL_BACKENDS = {
        **settings.CHANNEL_BACKENDS,
        "mobile_push": {
            "BACKEND": "channels.backends.fcm.FCMBackend",
            "OPTIONS": {"SERVICE_ACCOUNT_FILE": str(key_file)},
        },
    }
    with responses.RequestsMock() as mock:
        yield mock


def token_ok(mock: responses.RequestsMock, name: str = "token.json") -> None:
    mock.post(TOKEN_URL, body=fixture_bytes("fcm", name), content_type="application/json")


def fcm_answers(mock: responses.RequestsMock, name: str, status: int, **headers: str) -> None:
    body = fixture_bytes("fcm", name)
    mock.post(SEND_URL, status=status, body=body, content_type="application/json", headers=headers)


def queue(key: str = "k1", address: str = DEVICE, now: Any = None, **data: Any) -> Message:
    extras = {"title": "Your order shipped", "link": "https://shop.example.com/orders/1001", **data}
    return send_message(
        kind="mobile_push",
        address=address,
        subject="Order #1001",
        text="It is on its way.",
        data=extras,
        idempotency_key=key,
        now=now,
    )


def b64url_json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_the_first_send_trades_a_signed_jwt_for_an_access_token(fcm, account, signing_key):
    token_ok(fcm)
    fcm_answers(fcm, "send.json", 200)
    deliver_message(message_id=queue().pk)

    token_request = fcm.calls[0].request
    assert token_request.url == TOKEN_URL
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(token_request.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    header, claims, signature = form["assertion"][0].split(".")
    assert b64url_json(header) == {"typ": "JWT", "alg": "RS256", "kid": account["private_key_id"]}
    claims = b64url_json(claims)
    assert claims["iss"] == "firebase-adminsdk-h3rld@herald-demo-shop.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 3600
    # Signed with the service account's own key (raises if not).
    signing_key.public_key().verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        f"{header}.{form['assertion'][0].split('.')[1]}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_the_send_is_the_documented_v1_message_with_the_bearer_token(fcm):
    token_ok(fcm)
    fcm_answers(fcm, "send.json", 200)
    message = queue(image="https://cdn.example.com/p/1001.jpg", priority="high", data={"order": 1001})
    assert deliver_message(message_id=message.pk).startswith("sent")

    request = fcm.calls[1].request
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == f"Bearer {FIRST_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "message": {
            "token": DEVICE,
            "notification": {
                "title": "Your order shipped",
                "body": "It is on its way.",
                "image": "https://cdn.example.com/p/1001.jpg",
            },
            "data": {
                "order": "1001",
                "herald_message_id": str(message.pk),
                "link": "https://shop.example.com/orders/1001",
            },
            "android": {"priority": "HIGH"},
            "apns": {"headers": {"apns-priority": "10"}},
            "webpush": {"fcm_options": {"link": "https://shop.example.com/orders/1001"}},
        }
    }
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == "projects/herald-demo-shop/messages/0:1712345678901234%e609af1cf9fd7ecd"


def test_a_second_send_reuses_the_access_token(fcm):
    token_ok(fcm)
    fcm_answers(fcm, "send.json", 200)
    fcm_answers(fcm, "send.json", 200)
    deliver_message(message_id=queue("a").pk)
    deliver_message(message_id=queue("b").pk)
    assert [call.request.url for call in fcm.calls] == [TOKEN_URL, SEND_URL, SEND_URL]
    assert fcm.calls[2].request.headers["Authorization"] == f"Bearer {FIRST_TOKEN}"


def test_a_token_near_its_expiry_is_refreshed_before_the_send(fcm):
    token_ok(fcm)
    token_ok(fcm, "token_refreshed.json")
    fcm_answers(fcm, "send.json", 200)
    fcm_answers(fcm, "send.json", 200)
    start = timezone.now()
    deliver_message(message_id=queue("a", now=start).pk, now=start)
    later = start + timedelta(minutes=58)
    with time_machine.travel(later, tick=False):
        deliver_message(message_id=queue("b", now=later).pk, now=later)
    assert [call.request.url for call in fcm.calls] == [TOKEN_URL, SEND_URL, TOKEN_URL, SEND_URL]
    assert fcm.calls[3].request.headers["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_service_account_info_and_project_id_options_name_the_project(settings, account):
    settings.CHANNEL_BACKENDS = {
        **settings.CHANNEL_BACKENDS,
        "mobile_push": {
            "BACKEND": "channels.backends.fcm.FCMBackend",
            "OPTIONS": {"SERVICE_ACCOUNT_INFO": account, "PROJECT_ID": "herald-staging", "TTL": 3600},
        },
    }
    with responses.RequestsMock() as mock:
        token_ok(mock)
        url = "https://fcm.googleapis.com/v1/projects/herald-staging/messages:send"
        mock.post(url, json={"name": "projects/herald-staging/messages/0:1"})
        deliver_message(message_id=queue().pk)
        assert json.loads(mock.calls[1].request.body)["message"]["android"] == {"ttl": "3600s"}


@pytest.fixture
def dead() -> Any:
    """The (kind, address, reason) of every channels.signals.address_dead sent."""
    seen: list[tuple[str, str, str]] = []

    def handler(sender: Any, **kw: Any) -> None:
        seen.append((kw["kind"], kw["address"], kw["reason"]))

    signals.address_dead.connect(handler, weak=False, dispatch_uid="test-fcm-dead")
    yield seen
    signals.address_dead.disconnect(dispatch_uid="test-fcm-dead")


@pytest.mark.parametrize(
    ("fixture", "status", "dead_reason", "says"),
    [
        ("unregistered.json", 404, "unregistered", "no longer registered"),
        ("invalid_token.json", 400, "invalid_address", "not a valid registration token"),
        ("sender_id_mismatch.json", 403, "unregistered", "another Firebase project than herald-demo-shop"),
        ("invalid_data_value.json", 400, None, "message.data[0].value is invalid"),
        ("third_party_auth_error.json", 401, None, "APNs key or certificate"),
    ],
)
def test_fcm_errors_fail_the_message_and_report_dead_tokens(
    fcm, dead, django_capture_on_commit_callbacks, fixture, status, dead_reason, says
):
    token_ok(fcm)
    fcm_answers(fcm, fixture, status)
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert says in message.error
    assert message.attempts_log.get().response_code == status
    assert dead == ([("mobile_push", DEVICE, dead_reason)] if dead_reason else [])
    # Permanent: no second send, and a third-party auth error does not refresh our token.
    assert [call.request.url for call in fcm.calls] == [TOKEN_URL, SEND_URL]


def test_quota_exceeded_is_retried_at_the_time_retry_after_names(fcm):
    token_ok(fcm)
    fcm_answers(fcm, "quota_exceeded.json", 429, **{"Retry-After": "90"})
    fcm_answers(fcm, "send.json", 200)
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.QUEUED, "QUOTA_EXCEEDED")
    assert message.next_attempt_at == now + timedelta(seconds=90)
    assert "over the sending quota" in message.error
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=89)).startswith("not due")
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=90)).startswith("sent")


@pytest.mark.parametrize(("fixture", "status"), [("unavailable.json", 503), ("internal.json", 500)])
def test_fcm_outages_are_retried_later(fcm, dead, fixture, status):
    token_ok(fcm)
    fcm_answers(fcm, fixture, status)
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.next_attempt_at > now
    assert message.error_code == fixture.removesuffix(".json").upper()
    assert dead == []


def test_a_rejected_access_token_is_refreshed_once_and_the_send_repeated(fcm):
    token_ok(fcm)
    fcm_answers(fcm, "unauthenticated.json", 401)
    token_ok(fcm, "token_refreshed.json")
    fcm_answers(fcm, "send.json", 200)
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("sent")
    assert [call.request.url for call in fcm.calls] == [TOKEN_URL, SEND_URL, TOKEN_URL, SEND_URL]
    assert fcm.calls[3].request.headers["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_a_token_rejected_after_a_refresh_fails_the_message(fcm, dead):
    token_ok(fcm)
    fcm_answers(fcm, "unauthenticated.json", 401)
    token_ok(fcm, "token_refreshed.json")
    fcm_answers(fcm, "unauthenticated.json", 401)
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert message.error_code == "UNAUTHENTICATED"
    assert "even after a fresh one" in message.error
    assert len(fcm.calls) == 4
    assert dead == []


def test_google_refusing_the_key_fails_the_message_without_a_send(fcm):
    fcm.post(TOKEN_URL, status=400, body=fixture_bytes("fcm", "token_invalid_grant.json"))
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("failed")
    message.refresh_from_db()
    assert message.error_code == "auth"
    assert "invalid_grant" in message.error
    assert "firebase-adminsdk-h3rld@herald-demo-shop.iam.gserviceaccount.com" in message.error
    assert [call.request.url for call in fcm.calls] == [TOKEN_URL]


def test_a_web_push_subscription_given_as_a_device_token_fails_without_a_request(
    fcm, dead, django_capture_on_commit_callbacks
):
    address = '{"endpoint": "https://fcm.googleapis.com/fcm/send/abc", "keys": {}}'
    message = queue(address=address)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    assert dead == [("mobile_push", address, "invalid_address")]
    assert len(fcm.calls) == 0


def test_check_names_the_missing_or_unreadable_service_account(tmp_path, account):
    assert FCMBackend("push", {}).check() == [
        "cannot load its service account: Neither SERVICE_ACCOUNT_FILE (the path of the service account's "
        "JSON key) nor SERVICE_ACCOUNT_INFO is set"
    ]
    missing = tmp_path / "nowhere.json"
    [problem] = FCMBackend("push", {"SERVICE_ACCOUNT_FILE": str(missing)}).check()
    assert f"SERVICE_ACCOUNT_FILE {missing} cannot be read" in problem
    partial = {k: v for k, v in account.items() if k not in ("private_key", "project_id")}
    assert FCMBackend("push", {"SERVICE_ACCOUNT_INFO": partial}).check() == [
        "has a SERVICE_ACCOUNT_INFO without private_key",
        "needs PROJECT_ID (the SERVICE_ACCOUNT_INFO has no project_id)",
    ]
    [problem] = FCMBackend("push", {"SERVICE_ACCOUNT_INFO": {**account, "private_key": "not a key"}}).check()
    assert problem.startswith("has a SERVICE_ACCOUNT_INFO whose private_key cannot be read")
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(account))
    assert FCMBackend("push", {"SERVICE_ACCOUNT_FILE": str(key_file)}).check() == []
