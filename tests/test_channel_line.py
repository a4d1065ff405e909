from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import requests
import responses
import time_machine
from django.utils import timezone

from channels.actions import deliver_message, send_message
from channels.backends.line import LineBackend, retry_key
from channels.checks import check_channel_backends
from channels.models import Message, MessageStatus
from channels.upkeep import reconcile_message, resend_message
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

ALIAS = "line"
TOKEN = "W1jJ9m0PXcQ4+channel/access/token="
PUSH_URL = "https://api.line.me/v2/bot/message/push"
USER = "U4af4980629a8f8d0c7b6e1f2a3b4c5d6"
REQUEST_ID = "3a785346-2cf3-482f-8cd2-a7ad2cbbe1a3"


@pytest.fixture(autouse=True)
def line(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.line.LineBackend", "OPTIONS": {"CHANNEL_ACCESS_TOKEN": TOKEN}}
    }


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "order-1001-shipped", **extra) -> Message:
    extra.setdefault("text", "Your order #1001 has shipped.")
    return send_message(kind="line", alias=ALIAS, address=USER, idempotency_key=key, **extra)


def test_a_push_is_posted_with_a_retry_key_derived_from_the_idempotency_key(api):
    api.post(PUSH_URL, json=load_fixture("line", "push_ok.json"), headers={"x-line-request-id": REQUEST_ID})
    message = queue()
    deliver_message(message_id=message.pk)
    request = api.calls[0].request
    assert request.url == PUSH_URL
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    key = request.headers["X-Line-Retry-Key"]
    assert uuid.UUID(key).version == 5
    assert key == retry_key("order-1001-shipped") != retry_key("order-1002-shipped")
    assert json.loads(request.body) == {
        "to": USER,
        "messages": [{"type": "text", "text": "Your order #1001 has shipped."}],
    }
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, REQUEST_ID)


def test_every_attempt_of_one_message_carries_the_same_retry_key(api):
    api.post(PUSH_URL, status=500, json={"message": "An error occurred in the backend server."})
    api.post(PUSH_URL, json=load_fixture("line", "push_ok.json"), headers={"x-line-request-id": REQUEST_ID})
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert deliver_message(message_id=message.pk, now=message.next_attempt_at).startswith("sent")
    first, second = (call.request.headers["X-Line-Retry-Key"] for call in api.calls)
    assert first == second


def test_a_409_for_our_retry_key_means_an_earlier_attempt_was_accepted(api):
    api.post(
        PUSH_URL,
        status=409,
        json=load_fixture("line", "error_409_retry_key_accepted.json"),
        headers={"x-line-request-id": "e1b6b0a8-0000-4000-8000-000000000001", "x-line-accepted-request-id": REQUEST_ID},
    )
    message = queue()
    assert deliver_message(message_id=message.pk) == f"sent ({REQUEST_ID})"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, REQUEST_ID)
    assert list(message.attempts_log.values_list("outcome", "response_code")) == [("sent", 409)]


def test_an_unknown_outcome_is_settled_by_resending_which_line_deduplicates(api):
    api.post(PUSH_URL, body=requests.ReadTimeout("no answer"))
    api.post(
        PUSH_URL,
        status=409,
        json=load_fixture("line", "error_409_retry_key_accepted.json"),
        headers={"x-line-accepted-request-id": REQUEST_ID},
    )
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now) == "unknown"
    assert not LineBackend.supports_status_lookup
    assert reconcile_message(message_id=message.pk, now=now + timedelta(hours=2)) == "needs a person's decision"
    later = now + timedelta(hours=2)
    assert resend_message(message_id=message.pk, now=later)
    with time_machine.travel(later, tick=False):
        assert deliver_message(message_id=message.pk, now=later) == f"sent ({REQUEST_ID})"
    first, second = (call.request.headers["X-Line-Retry-Key"] for call in api.calls)
    assert first == second


@pytest.mark.parametrize(
    ("http_status", "fixture", "status", "words"),
    [
        (400, "error_400_invalid.json", MessageStatus.FAILED, "messages[0].text: Length must be between 0 and 5000"),
        (401, "error_401.json", MessageStatus.FAILED, "does not accept CHANNEL_ACCESS_TOKEN"),
        (403, "error_403.json", MessageStatus.FAILED, "Access to this API is not available for your account"),
        (429, "error_429_monthly_limit.json", MessageStatus.FAILED, "used up this month's message quota"),
        (429, "error_429_rate_limit.json", MessageStatus.QUEUED, "LINE asks us to slow down"),
    ],
)
def test_documented_errors_fail_or_retry_with_words_staff_can_act_on(api, http_status, fixture, status, words):
    api.post(PUSH_URL, status=http_status, json=load_fixture("line", fixture))
    message = queue()
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == status
    assert words in message.error


def test_a_server_error_is_retried(api):
    api.post(PUSH_URL, status=503, body="Service Unavailable")
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("retry at")


def test_an_address_that_is_not_a_line_user_id_fails_without_a_request(api):
    message = send_message(kind="line", alias=ALIAS, address="sheena@example.com", idempotency_key="k", text="Hi")
    assert "is not a LINE user id" in deliver_message(message_id=message.pk)
    assert len(api.calls) == 0


def test_the_system_check_names_a_missing_token(settings):
    settings.CHANNEL_BACKENDS = {ALIAS: {"BACKEND": "channels.backends.line.LineBackend", "OPTIONS": {}}}
    assert [error.msg for error in check_channel_backends()] == [
        "CHANNEL_BACKENDS['line'] (LineBackend) is missing the option CHANNEL_ACCESS_TOKEN."
    ]


def test_line_takes_no_receipts(client):
    assert client.post(f"/channels/receipts/{ALIAS}/", b"{}", content_type="application/json").status_code == 404
