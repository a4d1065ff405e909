from __future__ import annotations

import base64
import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from urllib.parse import parse_qsl

import pytest
import requests
import responses
import time_machine
from django.utils import timezone

from channels.actions import deliver_message, send_message
from channels.models import Message, MessageStatus
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

TO = "ada@customer.example"
UNSUBSCRIBE = "https://acme.example/u/abc123"

GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GMAIL_SEND = "https://gmail.googleapis.com/gmail/v1/users/me/messages/send"
GMAIL = {
    "BACKEND": "channels.backends.gmail.GmailBackend",
    "KIND": "email",
    "OPTIONS": {
        "CLIENT_ID": "123-abc.apps.googleusercontent.com",
        "CLIENT_SECRET": "GOCSPX-secret",
        "REFRESH_TOKEN": "1//0refresh",
        "DEFAULT_FROM": "Acme Shop <shop@acme.example>",
    },
}

TENANT = "4f3c2b1a-0e9d-4c8b-a7f6-e5d4c3b2a190"
MS_TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
GRAPH_SEND = "https://graph.microsoft.com/v1.0/users/shop@acme.example/sendMail"
GRAPH = {
    "BACKEND": "channels.backends.graph.GraphBackend",
    "KIND": "email",
    "OPTIONS": {
        "TENANT_ID": TENANT,
        "CLIENT_ID": "c9a1f5e2-7b4d-4e8a-9f31-2d6b8e0c4a17",
        "CLIENT_SECRET": "app~secret",
        "USER": "shop@acme.example",
    },
}


@pytest.fixture
def http(settings):
    settings.CHANNEL_BACKENDS = {"gmail": GMAIL, "graph": GRAPH}
    with responses.RequestsMock() as mock:
        yield mock


def queue(alias: str, key: str = "k1", now: datetime | None = None) -> Message:
    return send_message(
        kind="email",
        alias=alias,
        address=TO,
        idempotency_key=key,
        subject="Your order has shipped",
        text="It is on its way.",
        html="<p>It is on its way.</p>",
        data={"list_unsubscribe_url": UNSUBSCRIBE},
        now=now,
    )


def deliver(message: Message, now: datetime | None = None) -> Message:
    deliver_message(message_id=message.pk, now=now)
    message.refresh_from_db()
    return message


def form(call) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def calls_to(mock, url: str) -> list:
    return [c for c in mock.calls if c.request.url == url]


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


# --- Gmail ---------------------------------------------------------------------------------


def test_gmail_sends_the_raw_mime_with_a_token_from_the_refresh_token(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GMAIL_SEND, json=load_fixture("gmail", "message_sent.json"))
    message = deliver(queue("gmail"))

    token, send = http.calls
    assert form(token) == {
        "client_id": "123-abc.apps.googleusercontent.com",
        "client_secret": "GOCSPX-secret",
        "refresh_token": "1//0refresh",
        "grant_type": "refresh_token",
    }
    assert send.request.url == GMAIL_SEND
    assert send.request.headers["Authorization"] == "Bearer ya29.a0AfB_byC-test-access-token"
    assert send.request.headers["Content-Type"] == "application/json"
    body = json.loads(send.request.body)
    assert list(body) == ["raw"]
    sent = parsed(base64.urlsafe_b64decode(body["raw"]))
    assert sent["From"] == "Acme Shop <shop@acme.example>"
    assert (sent["To"], sent["Subject"]) == (TO, "Your order has shipped")
    assert sent["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent["X-Herald-Message"] == str(message.pk)
    assert sent["Message-ID"].startswith("<herald.")
    assert sent.get_body(("html",)).get_content().strip() == "<p>It is on its way.</p>"
    assert (message.status, message.provider_message_id) == ("sent", "18f0a3c2b7d4e915")


def test_gmail_reuses_the_token_until_shortly_before_it_expires(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token_refreshed.json"))
    http.post(GMAIL_SEND, json=load_fixture("gmail", "message_sent.json"))
    deliver(queue("gmail", "a"))
    deliver(queue("gmail", "b"))
    assert len(calls_to(http, GOOGLE_TOKEN)) == 1
    with time_machine.travel(timezone.now() + timedelta(seconds=3500)):
        deliver(queue("gmail", "c"))
    assert len(calls_to(http, GOOGLE_TOKEN)) == 2
    last = calls_to(http, GMAIL_SEND)[-1]
    assert last.request.headers["Authorization"] == "Bearer ya29.a0AfB_byD-fresh-access-token"


def test_gmail_401_fetches_a_fresh_token_once_then_sends(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token_refreshed.json"))
    http.post(GMAIL_SEND, status=401, json=load_fixture("gmail", "error_unauthenticated.json"))
    http.post(GMAIL_SEND, json=load_fixture("gmail", "message_sent.json"))
    message = deliver(queue("gmail"))
    assert message.status == MessageStatus.SENT
    sends = calls_to(http, GMAIL_SEND)
    assert [c.request.headers["Authorization"] for c in sends] == [
        "Bearer ya29.a0AfB_byC-test-access-token",
        "Bearer ya29.a0AfB_byD-fresh-access-token",
    ]


def test_gmail_401_with_a_fresh_token_too_fails_asking_to_reconnect(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GMAIL_SEND, status=401, json=load_fixture("gmail", "error_unauthenticated.json"))
    message = deliver(queue("gmail"))
    assert message.status == MessageStatus.FAILED
    assert "reconnect the Gmail mailbox" in message.error
    assert len(calls_to(http, GMAIL_SEND)) == 2
    assert len(calls_to(http, GOOGLE_TOKEN)) == 2


def test_gmail_429_is_retried_at_its_retry_after_then_sent(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    limited = load_fixture("gmail", "error_too_many_requests.json")
    http.post(GMAIL_SEND, status=429, headers={"Retry-After": "120"}, json=limited)
    http.post(GMAIL_SEND, json=load_fixture("gmail", "message_sent.json"))
    now = timezone.now()
    message = deliver(queue("gmail", now=now), now=now)
    assert (message.status, message.next_attempt_at) == (MessageStatus.QUEUED, now + timedelta(seconds=120))
    assert deliver(message, now=now + timedelta(seconds=119)).status == MessageStatus.QUEUED
    assert deliver(message, now=now + timedelta(seconds=120)).status == MessageStatus.SENT


def test_gmail_sending_limit_is_retried_at_the_time_in_its_text(http):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GMAIL_SEND, status=429, json=load_fixture("gmail", "error_mail_sending_limit.json"))
    now = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        message = deliver(queue("gmail", now=now), now=now)
    # The fixture says "Retry after 2025-03-04T11:30:00.000Z".
    assert message.next_attempt_at == datetime(2025, 3, 4, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fixture", "status", "outcome", "words"),
    [
        ("error_invalid_argument.json", 400, MessageStatus.FAILED, "Invalid To header"),
        ("error_rate_limit.json", 403, MessageStatus.QUEUED, "rate limit"),
        ("error_user_rate_limit.json", 403, MessageStatus.QUEUED, "rate limit"),
        ("error_backend.json", 500, MessageStatus.QUEUED, "500"),
    ],
)
def test_gmail_errors_map_to_failure_or_retry(http, fixture, status, outcome, words):
    http.post(GOOGLE_TOKEN, json=load_fixture("gmail", "token.json"))
    http.post(GMAIL_SEND, status=status, json=load_fixture("gmail", fixture))
    message = deliver(queue("gmail"))
    assert message.status == outcome
    assert words in message.error


def test_gmail_invalid_grant_fails_and_tells_staff_to_reconnect_the_mailbox(http):
    http.post(GOOGLE_TOKEN, status=400, json=load_fixture("gmail", "token_invalid_grant.json"))
    message = deliver(queue("gmail"))
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "oauth_invalid_grant")
    assert "reconnect the Gmail mailbox" in message.error
    assert calls_to(http, GMAIL_SEND) == []


def test_gmail_unreachable_token_service_is_retried(http):
    http.post(GOOGLE_TOKEN, body=requests.ConnectionError("connection refused"))
    assert deliver(queue("gmail")).status == MessageStatus.QUEUED


# --- Microsoft Graph ---------------------------------------------------------------------------


def test_graph_sends_base64_mime_with_a_client_credentials_token(http):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(GRAPH_SEND, status=202)
    message = deliver(queue("graph"))

    token, send = http.calls
    assert form(token) == {
        "client_id": "c9a1f5e2-7b4d-4e8a-9f31-2d6b8e0c4a17",
        "client_secret": "app~secret",
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }
    assert send.request.url == GRAPH_SEND
    assert send.request.headers["Authorization"] == "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-app-token"
    assert send.request.headers["Content-Type"] == "text/plain"
    sent = parsed(base64.b64decode(send.request.body, validate=True))
    # No DEFAULT_FROM: the mailbox itself is the sender.
    assert (sent["From"], sent["To"], sent["Subject"]) == ("shop@acme.example", TO, "Your order has shipped")
    assert sent["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent["X-Herald-Message"] == str(message.pk)
    # sendMail answers 202 with no id: ours is the provider id.
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == sent["Message-ID"]
    assert sent["Message-ID"].endswith("@acme.example>")


def test_graph_reuses_the_token_across_sends(http):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(GRAPH_SEND, status=202)
    deliver(queue("graph", "a"))
    deliver(queue("graph", "b"))
    assert len(calls_to(http, MS_TOKEN)) == 1
    assert len(calls_to(http, GRAPH_SEND)) == 2


def test_graph_401_fetches_a_fresh_token_once_then_sends(http):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(MS_TOKEN, json=load_fixture("graph", "token_refreshed.json"))
    http.post(GRAPH_SEND, status=401, json=load_fixture("graph", "error_invalid_token.json"))
    http.post(GRAPH_SEND, status=202)
    message = deliver(queue("graph"))
    assert message.status == MessageStatus.SENT
    last = calls_to(http, GRAPH_SEND)[-1]
    assert last.request.headers["Authorization"].endswith(".fresh-app-token")


@pytest.mark.parametrize(
    ("status", "fixture"),
    [(429, "error_throttled.json"), (503, "error_unavailable.json"), (504, "error_unavailable.json")],
)
def test_graph_throttling_and_outages_are_retried_at_retry_after(http, status, fixture):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(GRAPH_SEND, status=status, headers={"Retry-After": "30"}, json=load_fixture("graph", fixture))
    http.post(GRAPH_SEND, status=202)
    now = timezone.now()
    message = deliver(queue("graph", now=now), now=now)
    assert (message.status, message.next_attempt_at) == (MessageStatus.QUEUED, now + timedelta(seconds=30))
    assert deliver(message, now=now + timedelta(seconds=30)).status == MessageStatus.SENT


def test_graph_invalid_recipients_fail_and_suppress_the_address(
    http, dead_addresses, django_capture_on_commit_callbacks
):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(GRAPH_SEND, status=400, json=load_fixture("graph", "error_invalid_recipients.json"))
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue("graph"))
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "ErrorInvalidRecipients")
    assert dead_addresses == [("email", TO, "invalid_address")]


def test_graph_access_denied_fails_naming_the_mail_send_permission(
    http, dead_addresses, django_capture_on_commit_callbacks
):
    http.post(MS_TOKEN, json=load_fixture("graph", "token.json"))
    http.post(GRAPH_SEND, status=403, json=load_fixture("graph", "error_access_denied.json"))
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue("graph"))
    assert message.status == MessageStatus.FAILED
    assert "Mail.Send application permission" in message.error
    assert dead_addresses == []


def test_graph_bad_client_secret_fails_without_sending(http):
    http.post(MS_TOKEN, status=401, json=load_fixture("graph", "token_invalid_client.json"))
    message = deliver(queue("graph"))
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "oauth_invalid_client")
    assert "AADSTS7000215" in message.error and "Trace ID" not in message.error
    assert calls_to(http, GRAPH_SEND) == []


def test_the_system_check_names_missing_mailbox_options(settings):
    from channels.checks import check_channel_backends

    settings.CHANNEL_BACKENDS = {
        "gmail": {**GMAIL, "OPTIONS": {"CLIENT_ID": "x"}},
        "graph": {**GRAPH, "OPTIONS": {**GRAPH["OPTIONS"], "USER": "3f1b0c2d-mailbox-object-id"}},
    }
    messages = [e.msg for e in check_channel_backends()]
    assert any("gmail" in m and "CLIENT_SECRET" in m for m in messages)
    assert any("gmail" in m and "DEFAULT_FROM" in m for m in messages)
    assert any("graph" in m and "DEFAULT_FROM" in m for m in messages)
