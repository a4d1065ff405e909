from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
import responses
import time_machine
from django.utils import timezone

from channels.actions import deliver_message, outgoing, send_message
from channels.backends.base import RateLimit
from channels.models import Message, MessageStatus
from channels.registry import backends
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

ALIAS = "telegram"
TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SEND_URL = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
CHAT = "123456789"


@pytest.fixture(autouse=True)
def telegram(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "channels.backends.telegram.TelegramBackend", "OPTIONS": {"TOKEN": TOKEN}}
    }


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "order-1001-shipped", address: str = CHAT, **extra) -> Message:
    extra.setdefault("text", "Your order #1001 has shipped.")
    return send_message(kind="telegram", alias=ALIAS, address=address, idempotency_key=key, **extra)


def test_a_text_message_is_posted_as_the_bot_api_documents(api):
    api.post(SEND_URL, json=load_fixture("telegram", "send_message_ok.json"))
    message = queue()
    deliver_message(message_id=message.pk)
    request = api.calls[0].request
    assert request.url == SEND_URL
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"chat_id": 123456789, "text": "Your order #1001 has shipped."}
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, "123456789:4821")


def test_html_goes_with_parse_mode_html_and_the_link_is_previewed(api):
    api.post(SEND_URL, json=load_fixture("telegram", "send_message_ok.json"))
    message = queue(
        html='Your order <b>#1001</b> has shipped: <a href="https://acme.example/t/1001">track it</a>',
        data={"link": "https://acme.example/t/1001"},
    )
    deliver_message(message_id=message.pk)
    assert json.loads(api.calls[0].request.body) == {
        "chat_id": 123456789,
        "text": 'Your order <b>#1001</b> has shipped: <a href="https://acme.example/t/1001">track it</a>',
        "parse_mode": "HTML",
        "link_preview_options": {"url": "https://acme.example/t/1001"},
    }


def test_a_channel_username_is_sent_as_is_with_the_preview_turned_off(api):
    api.post(SEND_URL, json=load_fixture("telegram", "send_message_ok.json"))
    message = queue(address="@acme_news", data={"link_preview": False})
    deliver_message(message_id=message.pk)
    assert json.loads(api.calls[0].request.body) == {
        "chat_id": "@acme_news",
        "text": "Your order #1001 has shipped.",
        "link_preview_options": {"is_disabled": True},
    }


def test_a_429_waits_exactly_the_retry_after_telegram_names_then_sends(api):
    api.post(SEND_URL, status=429, json=load_fixture("telegram", "error_429.json"))
    api.post(SEND_URL, json=load_fixture("telegram", "send_message_ok.json"))
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.next_attempt_at == now + timedelta(seconds=35)
    assert message.error == "Telegram asks us to wait 35 s: Too Many Requests: retry after 35."
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=34)).startswith("not due")
    later = now + timedelta(seconds=35)
    # The per-chat token bucket reads the wall clock: move it with the ledger's clock.
    with time_machine.travel(later, tick=False):
        assert deliver_message(message_id=message.pk, now=later).startswith("sent")
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENT, "123456789:4821")
    assert list(message.attempts_log.values_list("outcome", "response_code")) == [("retry", 429), ("sent", 200)]


@pytest.mark.parametrize(
    ("fixture", "http_status", "dead_reason"),
    [
        ("error_403_blocked.json", 403, "opted_out"),
        ("error_403_deactivated.json", 403, "unregistered"),
        ("error_400_chat_not_found.json", 400, "invalid_address"),
    ],
)
def test_a_chat_that_is_gone_fails_and_is_reported_dead(
    api, dead_addresses, django_capture_on_commit_callbacks, fixture, http_status, dead_reason
):
    api.post(SEND_URL, status=http_status, json=load_fixture("telegram", fixture))
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error_code == str(http_status)
    assert dead_addresses == [("telegram", CHAT, dead_reason)]


@pytest.mark.parametrize(
    ("http_status", "body", "status", "words"),
    [
        (401, load_fixture("telegram", "error_401.json"), MessageStatus.FAILED, "check TOKEN with @BotFather"),
        (
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: can't parse entities: Unsupported start tag \"div\" at byte offset 0",
            },
            MessageStatus.FAILED,
            "could not read the message's HTML",
        ),
        (
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": {"migrate_to_chat_id": -1001234567890},
            },
            MessageStatus.FAILED,
            "moved to chat id -1001234567890",
        ),
        (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, MessageStatus.QUEUED, "502"),
    ],
)
def test_other_errors_fail_or_retry_with_words_staff_can_act_on(
    api, dead_addresses, django_capture_on_commit_callbacks, http_status, body, status, words
):
    api.post(SEND_URL, status=http_status, json=body)
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == status
    assert words in message.error
    assert dead_addresses == []


def test_a_connection_error_never_puts_the_bot_token_in_the_ledger(api):
    api.post(SEND_URL, body=requests.ConnectionError(f"Max retries exceeded with url: /bot{TOKEN}/sendMessage"))
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("retry at")
    message.refresh_from_db()
    assert TOKEN not in message.error
    assert "/bot<TOKEN>/sendMessage" in message.error
    assert TOKEN not in message.attempts_log.get().error


def test_a_read_timeout_leaves_the_outcome_unknown(api):
    api.post(SEND_URL, body=requests.ReadTimeout("no answer"))
    assert deliver_message(message_id=queue().pk) == "unknown"


def test_an_address_that_is_no_chat_id_fails_without_a_request(api):
    message = queue(address="+16505076520")
    assert "is not a Telegram chat id" in deliver_message(message_id=message.pk)
    assert len(api.calls) == 0


def test_telegrams_documented_limits_are_the_defaults():
    message = queue()
    assert backends[ALIAS].rate_limits(outgoing(message)) == [
        (f"alias:{ALIAS}", RateLimit(count=30, seconds=1)),
        (f"address:{ALIAS}:{CHAT}", RateLimit(count=1, seconds=1)),
    ]


def test_a_second_message_to_one_chat_within_a_second_waits_its_turn(api):
    api.post(SEND_URL, json=load_fixture("telegram", "send_message_ok.json"))
    first, second = queue("a"), queue("b")
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        assert deliver_message(message_id=first.pk, now=now).startswith("sent")
        assert deliver_message(message_id=second.pk, now=now).startswith("rate limited")
    second.refresh_from_db()
    assert second.status == MessageStatus.QUEUED
    assert second.next_attempt_at == now + timedelta(seconds=1)


def test_telegram_takes_no_receipts(client):
    assert client.post(f"/channels/receipts/{ALIAS}/", b"{}", content_type="application/json").status_code == 404
