from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from django.utils import timezone

from channels.actions import deliver_message, outgoing, send_message
from channels.backends.base import RateLimit
from channels.checks import check_channel_backends
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt
from channels.registry import backends
from tests.conftest import fixture_bytes, load_fixture

pytestmark = pytest.mark.django_db

ALIAS = "whatsapp"
OPTIONS = {
    "ACCESS_TOKEN": "EAAGm0PX4ZCpsBA-test",
    "PHONE_NUMBER_ID": "106540352242922",
    "APP_SECRET": "3c8e1f0a9d",
    "VERIFY_TOKEN": "herald-verify",
}
SEND_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
RECEIPTS = f"/channels/receipts/{ALIAS}/"
WAMID = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
PHONE = "+16505076520"


@pytest.fixture(autouse=True)
def whatsapp(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.whatsapp.WhatsAppBackend", "OPTIONS": OPTIONS}
    }


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "order-1001-shipped", **extra) -> Message:
    extra.setdefault("text", "")
    return send_message(kind="whatsapp", alias=ALIAS, address=PHONE, idempotency_key=key, **extra)


def graph_error(code: int, message: str, details: str = "") -> dict:
    """The Graph API's documented error body."""
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def deliver(message: Message, django_capture_on_commit_callbacks) -> Message:
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    return message


def test_a_template_message_is_posted_as_the_cloud_api_documents(api):
    api.post(SEND_URL, json=load_fixture("whatsapp", "send_template_accepted.json"))
    template = {
        "name": "order_shipped",
        "language": "en_US",
        "header_parameters": ["#1001"],
        "body_parameters": ["Sheena", "#1001", "UPS 1Z999AA10123456784"],
        "button_url_parameter": "1001?t=abc",
    }
    message = queue(data={"template": template})
    deliver_message(message_id=message.pk)
    request = api.calls[0].request
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == "Bearer EAAGm0PX4ZCpsBA-test"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505076520",
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "#1001"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Sheena"},
                        {"type": "text", "text": "#1001"},
                        {"type": "text", "text": "UPS 1Z999AA10123456784"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "1001?t=abc"}],
                },
            ],
        },
    }
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, WAMID)


def test_named_template_parameters_and_the_default_language_are_sent(api):
    api.post(SEND_URL, json=load_fixture("whatsapp", "send_template_accepted.json"))
    message = queue(data={"template": {"name": "welcome", "body_parameters": {"first_name": "Sheena"}}})
    deliver_message(message_id=message.pk)
    assert json.loads(api.calls[0].request.body)["template"] == {
        "name": "welcome",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Sheena"}]}
        ],
    }


def test_without_a_template_the_text_goes_as_a_service_window_text_message(api):
    api.post(SEND_URL, json=load_fixture("whatsapp", "send_template_accepted.json"))
    link = "https://acme.example/t/1001"
    message = queue(text=f"Thanks! Your parcel is at {link}", data={"link": link})
    deliver_message(message_id=message.pk)
    assert json.loads(api.calls[0].request.body) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505076520",
        "type": "text",
        "text": {"preview_url": True, "body": "Thanks! Your parcel is at https://acme.example/t/1001"},
    }


@pytest.mark.parametrize(
    ("code", "http_status", "status", "dead"),
    [
        (131026, 400, MessageStatus.FAILED, [("whatsapp", PHONE, "invalid_address")]),
        (131047, 400, MessageStatus.FAILED, []),
        (131051, 400, MessageStatus.FAILED, []),
        (132000, 400, MessageStatus.FAILED, []),
        (132001, 404, MessageStatus.FAILED, []),
        (100, 400, MessageStatus.FAILED, []),
        (190, 401, MessageStatus.FAILED, []),
        (130429, 400, MessageStatus.QUEUED, []),
        (131056, 400, MessageStatus.QUEUED, []),
        (80007, 400, MessageStatus.QUEUED, []),
        (4, 400, MessageStatus.QUEUED, []),
        (613, 400, MessageStatus.QUEUED, []),
        (131048, 400, MessageStatus.QUEUED, []),
        (131000, 500, MessageStatus.QUEUED, []),
    ],
)
def test_documented_errors_retry_or_fail_and_report_dead_numbers(
    api, dead_addresses, django_capture_on_commit_callbacks, code, http_status, status, dead
):
    api.post(SEND_URL, status=http_status, json=graph_error(code, f"(#{code}) Something", "Meta's details"))
    message = deliver(queue(data={"template": {"name": "order_shipped"}}), django_capture_on_commit_callbacks)
    assert message.status == status
    assert dead_addresses == dead
    attempt = message.attempts_log.get()
    assert attempt.response_code == http_status
    assert attempt.outcome == ("failed" if status == MessageStatus.FAILED else "retry")


def test_outside_the_24_hour_window_staff_are_told_to_use_an_approved_template(
    api, dead_addresses, django_capture_on_commit_callbacks
):
    api.post(SEND_URL, status=400, json=load_fixture("whatsapp", "error_131047.json"))
    message = deliver(queue(text="Any news?"), django_capture_on_commit_callbacks)
    assert message.status == MessageStatus.FAILED
    assert message.error_code == "131047"
    assert "approved template" in message.error
    assert dead_addresses == []


def test_an_expired_token_fails_with_what_to_do(api, django_capture_on_commit_callbacks):
    api.post(SEND_URL, status=401, json=graph_error(190, "Error validating access token: Session has expired"))
    message = deliver(queue(text="Hello"), django_capture_on_commit_callbacks)
    assert message.status == MessageStatus.FAILED
    assert "update ACCESS_TOKEN" in message.error


def test_a_number_without_a_country_code_fails_without_a_request(api, django_capture_on_commit_callbacks):
    message = send_message(kind="whatsapp", alias=ALIAS, address="650 507 6520", idempotency_key="k", text="Hi")
    message = deliver(message, django_capture_on_commit_callbacks)
    assert message.status == MessageStatus.FAILED
    assert "DEFAULT_REGION" in message.error
    assert len(api.calls) == 0


def test_a_national_number_is_read_in_the_default_region(api, settings):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.whatsapp.WhatsAppBackend", "OPTIONS": {**OPTIONS, "DEFAULT_REGION": "US"}}
    }
    api.post(SEND_URL, json=load_fixture("whatsapp", "send_template_accepted.json"))
    message = send_message(kind="whatsapp", alias=ALIAS, address="(650) 507-6520", idempotency_key="k", text="Hi")
    deliver_message(message_id=message.pk)
    assert json.loads(api.calls[0].request.body)["to"] == "16505076520"


def test_a_429_with_retry_after_is_retried_no_sooner(api):
    api.post(SEND_URL, status=429, headers={"Retry-After": "60"}, json=graph_error(130429, "(#130429) Rate limit hit"))
    now = timezone.now()
    message = queue(text="Hi", now=now)
    deliver_message(message_id=message.pk, now=now)
    message.refresh_from_db()
    assert (message.status, message.next_attempt_at) == (MessageStatus.QUEUED, now + timedelta(seconds=60))


def test_a_read_timeout_leaves_the_outcome_unknown(api):
    api.post(SEND_URL, body=requests.ReadTimeout("no answer"))
    message = queue(text="Hi")
    assert deliver_message(message_id=message.pk) == "unknown"
    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN


def test_the_system_check_names_missing_options(settings):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.whatsapp.WhatsAppBackend", "OPTIONS": {"ACCESS_TOKEN": "EAAG"}}
    }
    assert [error.msg for error in check_channel_backends()] == [
        f"CHANNEL_BACKENDS['whatsapp'] (WhatsAppBackend) is missing the option {name}."
        for name in ("PHONE_NUMBER_ID", "APP_SECRET", "VERIFY_TOKEN")
    ]


def test_the_default_rate_is_the_cloud_api_throughput():
    backend = backends[ALIAS]
    message = queue(text="x")
    assert backend.rate_limits(outgoing(message)) == [(f"alias:{ALIAS}", RateLimit(count=80, seconds=1))]


# --- receipts ----------------------------------------------------------------------------


def signed(body: bytes, secret: str = OPTIONS["APP_SECRET"]) -> dict[str, str]:
    return {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def post_receipt(client, name: str, secret: str = OPTIONS["APP_SECRET"]):
    body = fixture_bytes("whatsapp", name)
    return client.generic("POST", RECEIPTS, body, content_type="application/json", **signed(body, secret))


def sent_message() -> Message:
    message = queue(text="Hi")
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=WAMID)
    return message


def process_all(django_capture_on_commit_callbacks) -> list[str]:
    with django_capture_on_commit_callbacks(execute=True):
        return [process_receipt(receipt_id=pk) for pk in Receipt.objects.order_by("pk").values_list("pk", flat=True)]


def test_the_subscription_check_answers_the_challenge_only_for_our_verify_token(client):
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    right = client.get(RECEIPTS, {**query, "hub.verify_token": "herald-verify"})
    assert right.status_code == 200
    assert right.content == b"1158201444"
    assert right["Content-Type"].startswith("text/plain")
    wrong = client.get(RECEIPTS, {**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    assert b"1158201444" not in wrong.content


def test_a_delivered_status_sent_twice_moves_the_message_once(client, django_capture_on_commit_callbacks):
    message = sent_message()
    assert post_receipt(client, "status_delivered.json").status_code == 200
    assert post_receipt(client, "status_delivered.json").status_code == 200
    results = process_all(django_capture_on_commit_callbacks)
    assert results == [f"delivered for message {message.pk}", f"delivered for message {message.pk} (already recorded)"]
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == datetime.fromtimestamp(1750263773, tz=UTC)
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1


def test_a_receipt_signed_with_another_secret_or_unsigned_is_401_and_not_stored(client):
    assert post_receipt(client, "status_delivered.json", secret="not-our-secret").status_code == 401
    unsigned = client.generic("POST", RECEIPTS, fixture_bytes("whatsapp", "status_delivered.json"))
    assert unsigned.status_code == 401
    assert not Receipt.objects.exists()
    assert sorted(RejectedReceipt.objects.values_list("reason", flat=True)) == [
        "Missing the X-Hub-Signature-256 header.",
        "X-Hub-Signature-256 does not match the body signed with APP_SECRET.",
    ]


def test_a_signed_receipt_that_is_not_a_whatsapp_webhook_fails_with_its_reason(
    client, django_capture_on_commit_callbacks
):
    body = fixture_bytes("messenger", "message_deliveries.json")
    assert client.generic("POST", RECEIPTS, body, content_type="application/json", **signed(body)).status_code == 200
    assert process_all(django_capture_on_commit_callbacks) == [
        "failed: Expected a webhook about 'whatsapp_business_account', got 'page'."
    ]
    assert Receipt.objects.get().status == "failed"


def test_read_is_recorded_as_opened(client, django_capture_on_commit_callbacks):
    message = sent_message()
    post_receipt(client, "status_read.json")
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.opened_at == datetime.fromtimestamp(1750263891, tz=UTC)
    assert message.status == MessageStatus.DELIVERED
    assert list(message.events.exclude(kind="queued").values_list("kind", flat=True)) == ["opened"]


def test_a_failed_131026_status_fails_the_message_and_reports_the_dead_number(
    client, dead_addresses, django_capture_on_commit_callbacks
):
    message = sent_message()
    post_receipt(client, "status_failed_131026.json")
    process_all(django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error == "WhatsApp: Message Undeliverable. (131026)"
    assert dead_addresses == [("whatsapp", PHONE, "invalid_address")]


def test_an_inbound_stop_opts_the_number_out(client, dead_addresses, django_capture_on_commit_callbacks):
    post_receipt(client, "inbound_stop.json")
    assert process_all(django_capture_on_commit_callbacks) == [f"opt-out from {PHONE}"]
    assert dead_addresses == [("whatsapp", PHONE, "opted_out")]


def test_an_inbound_message_that_is_not_stop_records_nothing(
    client, dead_addresses, django_capture_on_commit_callbacks
):
    payload = load_fixture("whatsapp", "inbound_stop.json")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "Don't stop the deliveries!"
    body = json.dumps(payload).encode()
    client.generic("POST", RECEIPTS, body, content_type="application/json", **signed(body))
    assert process_all(django_capture_on_commit_callbacks) == ["nothing to record"]
    assert dead_addresses == []
    assert Receipt.objects.get().status == "processed"
