from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
import requests
import responses

from channels.actions import deliver_message, send_message
from channels.checks import check_channel_backends
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt
from tests.conftest import fixture_bytes, load_fixture

pytestmark = pytest.mark.django_db

ALIAS = "viber"
TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
OPTIONS = {"AUTH_TOKEN": TOKEN, "SENDER_NAME": "Acme Shop", "SENDER_AVATAR": "https://acme.example/logo.jpg"}
SEND_URL = "https://chatapi.viber.com/pa/send_message"
RECEIPTS = f"/channels/receipts/{ALIAS}/"
USER = "01234567890A="
TOKEN_ID = "5741311803571721087"


@pytest.fixture(autouse=True)
def viber(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {ALIAS: {"BACKEND": "channels.backends.viber.ViberBackend", "OPTIONS": OPTIONS}}


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "order-1001-shipped", **extra) -> Message:
    extra.setdefault("text", "Your order #1001 has shipped.")
    return send_message(kind="viber", alias=ALIAS, address=USER, idempotency_key=key, **extra)


def test_a_text_message_is_posted_as_the_rest_bot_api_documents(api):
    api.post(SEND_URL, json=load_fixture("viber", "send_message_ok.json"))
    message = queue()
    deliver_message(message_id=message.pk)
    request = api.calls[0].request
    assert request.url == SEND_URL
    assert request.headers["X-Viber-Auth-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "receiver": USER,
        "min_api_version": 1,
        "sender": {"name": "Acme Shop", "avatar": "https://acme.example/logo.jpg"},
        "type": "text",
        "text": "Your order #1001 has shipped.",
    }
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, TOKEN_ID)


def test_an_image_makes_a_picture_message_with_the_text_as_caption(api):
    api.post(SEND_URL, json=load_fixture("viber", "send_message_ok.json"))
    message = queue(data={"image": "https://acme.example/p/mug.jpg"})
    deliver_message(message_id=message.pk)
    body = json.loads(api.calls[0].request.body)
    assert (body["type"], body["text"], body["media"]) == (
        "picture",
        "Your order #1001 has shipped.",
        "https://acme.example/p/mug.jpg",
    )


def test_a_caption_too_long_for_a_picture_fails_before_sending(api):
    message = queue(text="x" * 769, data={"image": "https://acme.example/p/mug.jpg"})
    assert deliver_message(message_id=message.pk).startswith("failed: Viber allows 768 characters")
    assert len(api.calls) == 0


@pytest.mark.parametrize(
    ("status", "name", "outcome", "dead"),
    [
        (1, "invalidUrl", MessageStatus.FAILED, []),
        (2, "invalidAuthToken", MessageStatus.FAILED, []),
        (3, "badData", MessageStatus.FAILED, []),
        (4, "missingData", MessageStatus.FAILED, []),
        (5, "receiverNotRegistered", MessageStatus.FAILED, [("viber", USER, "unregistered")]),
        (6, "receiverNotSubscribed", MessageStatus.FAILED, [("viber", USER, "opted_out")]),
        (7, "publicAccountBlocked", MessageStatus.FAILED, []),
        (8, "publicAccountNotFound", MessageStatus.FAILED, []),
        (9, "publicAccountSuspended", MessageStatus.FAILED, []),
        (10, "webhookNotSet", MessageStatus.FAILED, []),
        (11, "receiverNoSuitableDevice", MessageStatus.FAILED, [("viber", USER, "unregistered")]),
        (12, "tooManyRequests", MessageStatus.QUEUED, []),
        (13, "apiVersionNotSupported", MessageStatus.FAILED, []),
        (24, "noBalance", MessageStatus.FAILED, []),
    ],
)
def test_documented_status_codes_retry_or_fail_and_report_dead_users(
    api, dead_addresses, django_capture_on_commit_callbacks, status, name, outcome, dead
):
    # Viber answers HTTP 200 with a non-zero status when it refuses a message.
    api.post(SEND_URL, json={"status": status, "status_message": name, "chat_hostname": "SN-CHAT-05_"})
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == outcome
    assert message.error_code == name
    assert f"Viber status {status}: {name}" in message.error
    assert dead_addresses == dead


def test_a_read_timeout_leaves_the_outcome_unknown(api):
    api.post(SEND_URL, body=requests.ReadTimeout("no answer"))
    message = queue()
    assert deliver_message(message_id=message.pk) == "unknown"


def test_a_sender_name_longer_than_viber_allows_is_a_configuration_error(settings):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.viber.ViberBackend", "OPTIONS": {**OPTIONS, "SENDER_NAME": "A" * 29}}
    }
    assert [error.msg for error in check_channel_backends()] == [
        "CHANNEL_BACKENDS['viber'] (ViberBackend) has a SENDER_NAME longer than Viber's 28 characters."
    ]


# --- receipts ----------------------------------------------------------------------------


def post_callback(client, name: str, key: str = TOKEN):
    body = fixture_bytes("viber", name)
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return client.generic(
        "POST", RECEIPTS, body, content_type="application/json", HTTP_X_VIBER_CONTENT_SIGNATURE=signature
    )


def sent_message() -> Message:
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=TOKEN_ID)
    return message


def process_all(django_capture_on_commit_callbacks) -> list[str]:
    with django_capture_on_commit_callbacks(execute=True):
        return [process_receipt(receipt_id=pk) for pk in Receipt.objects.order_by("pk").values_list("pk", flat=True)]


def test_a_delivered_callback_sent_twice_moves_the_message_once(client, django_capture_on_commit_callbacks):
    message = sent_message()
    assert post_callback(client, "callback_delivered.json").status_code == 200
    assert post_callback(client, "callback_delivered.json").status_code == 200
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == datetime.fromtimestamp(1750263773.214, tz=UTC)
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1


def test_a_callback_signed_with_another_token_or_unsigned_is_401_and_not_stored(client):
    assert post_callback(client, "callback_delivered.json", key="someone-else").status_code == 401
    unsigned = client.generic("POST", RECEIPTS, fixture_bytes("viber", "callback_delivered.json"))
    assert unsigned.status_code == 401
    assert not Receipt.objects.exists()
    assert sorted(RejectedReceipt.objects.values_list("reason", flat=True)) == [
        "Missing the X-Viber-Content-Signature header.",
        "X-Viber-Content-Signature does not match the body signed with AUTH_TOKEN.",
    ]


def test_a_signed_callback_that_is_not_json_fails_with_its_reason(client, django_capture_on_commit_callbacks):
    body = b"event=delivered"
    signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    response = client.generic("POST", RECEIPTS, body, content_type="text/plain", HTTP_X_VIBER_CONTENT_SIGNATURE=signature)
    assert response.status_code == 200
    assert process_all(django_capture_on_commit_callbacks) == ["failed: The Viber callback is not JSON."]


def test_seen_is_recorded_as_opened(client, django_capture_on_commit_callbacks):
    message = sent_message()
    post_callback(client, "callback_seen.json")
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.opened_at == datetime.fromtimestamp(1750263891.408, tz=UTC)


def test_failed_fails_the_message_with_vibers_description(client, django_capture_on_commit_callbacks):
    message = sent_message()
    post_callback(client, "callback_failed.json")
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert (message.status, message.error) == (MessageStatus.FAILED, "Viber: failure description")


def test_unsubscribed_opts_the_user_out(client, dead_addresses, django_capture_on_commit_callbacks):
    post_callback(client, "callback_unsubscribed.json")
    assert process_all(django_capture_on_commit_callbacks) == [f"opt-out from {USER}"]
    assert dead_addresses == [("viber", USER, "opted_out")]


def test_the_webhook_check_callback_is_answered_and_records_nothing(client, django_capture_on_commit_callbacks):
    assert post_callback(client, "callback_webhook.json").status_code == 200
    assert process_all(django_capture_on_commit_callbacks) == ["nothing to record"]
