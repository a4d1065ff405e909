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

ALIAS = "messenger"
OPTIONS = {"PAGE_ACCESS_TOKEN": "EAAJpage-test", "APP_SECRET": "9f2c4e1b7a", "VERIFY_TOKEN": "herald-verify"}
SEND_URL = "https://graph.facebook.com/v21.0/me/messages"
RECEIPTS = f"/channels/receipts/{ALIAS}/"
PSID = "6783421098765432"
MID = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"


@pytest.fixture(autouse=True)
def messenger(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {ALIAS: {"BACKEND": "channels.backends.messenger.MessengerBackend", "OPTIONS": OPTIONS}}


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "order-1001-shipped", **extra) -> Message:
    extra.setdefault("text", "Your order #1001 has shipped.")
    return send_message(kind="messenger", alias=ALIAS, address=PSID, idempotency_key=key, **extra)


def graph_error(code: int, subcode: int | None, message: str) -> dict:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A2oT0l8N1hW3"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def test_an_order_update_goes_with_the_post_purchase_tag_and_a_bearer_token(api):
    api.post(SEND_URL, json=load_fixture("messenger", "send_ok.json"))
    message = queue()
    deliver_message(message_id=message.pk)
    request = api.calls[0].request
    # The token travels in a header, never in the URL.
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == "Bearer EAAJpage-test"
    assert json.loads(request.body) == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "POST_PURCHASE_UPDATE",
        "message": {"text": "Your order #1001 has shipped."},
    }
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, MID)


def test_a_message_without_a_tag_goes_as_an_update_inside_the_24_hour_window(api):
    api.post(SEND_URL, json=load_fixture("messenger", "send_ok.json"))
    deliver_message(message_id=queue(data={"messenger_tag": ""}).pk)
    body = json.loads(api.calls[0].request.body)
    assert body["messaging_type"] == "UPDATE"
    assert "tag" not in body


def test_another_documented_tag_can_be_chosen_per_message(api):
    api.post(SEND_URL, json=load_fixture("messenger", "send_ok.json"))
    deliver_message(message_id=queue(data={"messenger_tag": "ACCOUNT_UPDATE"}).pk)
    assert json.loads(api.calls[0].request.body)["tag"] == "ACCOUNT_UPDATE"


def test_a_retired_tag_fails_before_sending(api):
    message = queue(data={"messenger_tag": "SHIPPING_UPDATE"})
    assert deliver_message(message_id=message.pk).startswith("failed: 'SHIPPING_UPDATE' is not a Messenger message tag")
    assert len(api.calls) == 0


@pytest.mark.parametrize(
    ("code", "subcode", "http_status", "status", "dead"),
    [
        (551, 1545041, 400, MessageStatus.FAILED, [("messenger", PSID, "unregistered")]),
        (100, 2018001, 400, MessageStatus.FAILED, [("messenger", PSID, "invalid_address")]),
        (10, 2018278, 400, MessageStatus.FAILED, []),
        (200, None, 403, MessageStatus.FAILED, []),
        (190, None, 401, MessageStatus.FAILED, []),
        (100, None, 400, MessageStatus.FAILED, []),
        (613, None, 400, MessageStatus.QUEUED, []),
        (4, None, 400, MessageStatus.QUEUED, []),
        (32, None, 400, MessageStatus.QUEUED, []),
        (1200, None, 400, MessageStatus.QUEUED, []),
        (2, None, 503, MessageStatus.QUEUED, []),
    ],
)
def test_documented_errors_retry_or_fail_and_report_dead_recipients(
    api, dead_addresses, django_capture_on_commit_callbacks, code, subcode, http_status, status, dead
):
    api.post(SEND_URL, status=http_status, json=graph_error(code, subcode, f"(#{code}) Something"))
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == status
    assert dead_addresses == dead


def test_outside_the_window_staff_are_told_how_to_send(api):
    outside = graph_error(10, 2018278, "(#10) This message is sent outside of allowed window.")
    api.post(SEND_URL, status=400, json=outside)
    message = queue(data={"messenger_tag": None})
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert "24-hour window" in message.error
    assert message.error_code == "10"


def test_the_documented_unavailable_answer_suppresses_the_recipient(
    api, dead_addresses, django_capture_on_commit_callbacks
):
    api.post(SEND_URL, status=400, json=load_fixture("messenger", "error_551_unavailable.json"))
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "This person isn't available right now." in message.error
    assert dead_addresses == [("messenger", PSID, "unregistered")]


def test_a_read_timeout_leaves_the_outcome_unknown(api):
    api.post(SEND_URL, body=requests.ReadTimeout("no answer"))
    assert deliver_message(message_id=queue().pk) == "unknown"


def test_the_system_check_names_a_default_tag_messenger_does_not_know(settings):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {
            "BACKEND": "channels.backends.messenger.MessengerBackend",
            "OPTIONS": {**OPTIONS, "DEFAULT_TAG": "SHIPPING_UPDATE"},
        }
    }
    assert [error.msg for error in check_channel_backends()] == [
        "CHANNEL_BACKENDS['messenger'] (MessengerBackend) has a DEFAULT_TAG 'SHIPPING_UPDATE' that is not one of "
        "POST_PURCHASE_UPDATE, ACCOUNT_UPDATE, CONFIRMED_EVENT_UPDATE, HUMAN_AGENT."
    ]


# --- receipts ----------------------------------------------------------------------------


def post_receipt(client, name: str, secret: str = OPTIONS["APP_SECRET"]):
    body = fixture_bytes("messenger", name)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.generic("POST", RECEIPTS, body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature)


def sent_message() -> Message:
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=MID)
    return message


def process_all(django_capture_on_commit_callbacks) -> list[str]:
    with django_capture_on_commit_callbacks(execute=True):
        return [process_receipt(receipt_id=pk) for pk in Receipt.objects.order_by("pk").values_list("pk", flat=True)]


def test_the_subscription_check_answers_the_challenge_only_for_our_verify_token(client):
    query = {"hub.mode": "subscribe", "hub.challenge": "CHALLENGE_ACCEPTED"}
    right = client.get(RECEIPTS, {**query, "hub.verify_token": "herald-verify"})
    assert (right.status_code, right.content) == (200, b"CHALLENGE_ACCEPTED")
    assert client.get(RECEIPTS, {**query, "hub.verify_token": "nope"}).status_code == 403


def test_a_delivery_sent_twice_marks_each_mid_delivered_once(client, django_capture_on_commit_callbacks):
    message = sent_message()
    post_receipt(client, "message_deliveries.json")
    post_receipt(client, "message_deliveries.json")
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == datetime.fromtimestamp(1750263773, tz=UTC)
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1


def test_a_signed_receipt_that_is_not_json_fails_with_its_reason(client, django_capture_on_commit_callbacks):
    body = b"<html>not a webhook</html>"
    signature = "sha256=" + hmac.new(OPTIONS["APP_SECRET"].encode(), body, hashlib.sha256).hexdigest()
    client.generic("POST", RECEIPTS, body, content_type="text/html", HTTP_X_HUB_SIGNATURE_256=signature)
    assert process_all(django_capture_on_commit_callbacks) == ["failed: The webhook body is not JSON."]


def test_a_read_watermark_names_no_message_and_records_nothing(client, django_capture_on_commit_callbacks):
    message = sent_message()
    post_receipt(client, "message_reads.json")
    assert process_all(django_capture_on_commit_callbacks) == ["nothing to record"]
    message.refresh_from_db()
    assert (message.status, message.opened_at) == (MessageStatus.SENT, None)


def test_a_receipt_without_the_apps_signature_is_401_and_not_stored(client):
    assert post_receipt(client, "message_deliveries.json", secret="another-app").status_code == 401
    unsigned = client.generic("POST", RECEIPTS, fixture_bytes("messenger", "message_deliveries.json"))
    assert unsigned.status_code == 401
    assert not Receipt.objects.exists()
    assert sorted(RejectedReceipt.objects.values_list("reason", flat=True)) == [
        "Missing the X-Hub-Signature-256 header.",
        "X-Hub-Signature-256 does not match the body signed with APP_SECRET.",
    ]
