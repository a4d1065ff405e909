from __future__ import annotations

import asyncio
import email
import json
import socket
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
import requests
import responses
from aiosmtpd.controller import Controller
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from anymail.signals import AnymailTrackingEvent, pre_send, tracking
from django.core import mail
from django.utils import timezone

from channels import anymail_tracking
from channels.actions import deliver_message, send_message
from channels.models import DeliveryEvent, Message, MessageStatus

pytestmark = pytest.mark.django_db

SENDER = "Acme Shop <shop@acme.example>"
TO = "ada@customer.example"
UNSUBSCRIBE = "https://acme.example/u/abc123"
POSTMARK_URL = "https://api.postmarkapp.com/email"


def queue(key: str = "welcome-1", address: str = TO, **data) -> Message:
    return send_message(
        kind="email",
        address=address,
        idempotency_key=key,
        subject="Welcome to Acme",
        text="Hello Ada, thanks for joining.",
        html="<p>Hello Ada, thanks for joining.</p>",
        data={"list_unsubscribe_url": UNSUBSCRIBE, "list_unsubscribe_mailto": "unsubscribe@acme.example", **data},
    )


def deliver(message: Message, **kwargs) -> Message:
    deliver_message(message_id=message.pk, **kwargs)
    message.refresh_from_db()
    return message


# --- SMTP, against a real SMTP server on loopback ------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps what it accepts. ``rcpt_reply`` answers every RCPT;
    ``data_delay`` keeps the client waiting for the answer to the message."""

    def __init__(self, rcpt_reply: str = "", data_delay: float = 0.0) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_delay = data_delay
        self.envelopes: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as 4F2A1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_smtp(settings, port: int, timeout: float = 5) -> None:
    settings.CHANNEL_BACKENDS = {
        "email": {
            "BACKEND": "channels.backends.email.EmailBackend",
            "OPTIONS": {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "CONNECTION": {"host": "127.0.0.1", "port": port, "timeout": timeout},
                "DEFAULT_FROM": SENDER,
            },
        }
    }


@pytest.fixture
def smtp_server(settings):
    controllers = []

    def start(handler: Inbox, timeout: float = 5) -> Inbox:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        use_smtp(settings, port, timeout)
        return handler

    yield start
    for controller in controllers:
        controller.stop()


def test_smtp_delivers_text_and_html_with_sender_unsubscribe_and_message_id(smtp_server):
    inbox = smtp_server(Inbox())
    message = deliver(queue(reply_to="help@acme.example"))
    assert message.status == MessageStatus.SENT
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "shop@acme.example"
    assert envelope.rcpt_tos == [TO]
    received = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert received["From"] == SENDER
    assert received["To"] == TO
    assert received["Reply-To"] == "help@acme.example"
    assert received["Subject"] == "Welcome to Acme"
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@acme.example>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["X-Herald-Message"] == str(message.pk)
    assert received.get_body(("plain",)).get_content().strip() == "Hello Ada, thanks for joining."
    assert received.get_body(("html",)).get_content().strip() == "<p>Hello Ada, thanks for joining.</p>"
    # The Message-ID comes from the idempotency key, so a second copy would carry the same one.
    assert received["Message-ID"].startswith("<herald.") and received["Message-ID"].endswith("@acme.example>")
    assert message.provider_message_id == received["Message-ID"]


def test_the_sender_name_and_address_of_the_message_win_over_the_default(smtp_server):
    inbox = smtp_server(Inbox())
    deliver(queue(from_email="news@acme.example", from_name="Acme, Café"))
    received = email.message_from_bytes(inbox.envelopes[0].original_content, policy=policy.default)
    assert received["From"].addresses[0].display_name == "Acme, Café"
    assert received["From"].addresses[0].addr_spec == "news@acme.example"


def test_a_550_user_unknown_fails_the_message_as_a_hard_bounce(
    smtp_server, dead_addresses, django_capture_on_commit_callbacks
):
    smtp_server(Inbox(rcpt_reply="550 5.1.1 <ada@customer.example>: Recipient address rejected: User unknown"))
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue())
    assert message.status == MessageStatus.FAILED
    assert message.error_code == "smtp_550"
    assert "User unknown" in message.error
    assert dead_addresses == [("email", TO, "hard_bounce")]


def test_a_relay_refusal_fails_without_blaming_the_address(
    smtp_server, dead_addresses, django_capture_on_commit_callbacks
):
    smtp_server(Inbox(rcpt_reply="554 5.7.1 <ada@customer.example>: Relay access denied"))
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue())
    assert message.status == MessageStatus.FAILED
    assert dead_addresses == []


def test_a_451_greylisting_reply_is_retried(smtp_server):
    smtp_server(Inbox(rcpt_reply="451 4.7.1 Greylisted, please try again later"))
    message = deliver(queue())
    assert message.status == MessageStatus.QUEUED
    assert message.next_attempt_at > timezone.now()
    assert list(message.attempts_log.values_list("outcome", flat=True)) == ["retry"]
    assert "451" in message.error


def test_a_server_that_is_not_listening_is_retried(settings):
    use_smtp(settings, free_port())
    message = deliver(queue())
    assert message.status == MessageStatus.QUEUED
    assert "Could not talk to the mail server" in message.error


def test_a_server_silent_after_taking_the_message_leaves_the_outcome_unknown(smtp_server):
    smtp_server(Inbox(data_delay=3), timeout=0.5)
    message = deliver(queue())
    assert message.status == MessageStatus.UNKNOWN


def test_an_invalid_address_fails_and_is_suppressed_without_a_connection(
    settings, dead_addresses, django_capture_on_commit_callbacks
):
    use_smtp(settings, free_port())
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue(address="ada@@customer"))
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "invalid_address")
    assert dead_addresses == [("email", "ada@@customer", "invalid_address")]


def test_a_subject_with_a_line_break_is_refused_not_sent(smtp_server):
    inbox = smtp_server(Inbox())
    message = send_message(
        kind="email", address=TO, idempotency_key="inj", subject="Hi\nBcc: all@x.example", text="Hello"
    )
    message = deliver(message)
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "bad_header")
    assert inbox.envelopes == []


def test_the_message_id_follows_the_idempotency_key_so_a_second_copy_is_recognisable():
    from channels.actions import outgoing
    from channels.backends.email import build_email

    first, other = queue("order-7-shipped"), queue("order-8-shipped")
    options = {"DEFAULT_FROM": SENDER}
    again = build_email(outgoing(first), options).extra_headers["Message-ID"]
    assert build_email(outgoing(first), options).extra_headers["Message-ID"] == again
    assert build_email(outgoing(other), options).extra_headers["Message-ID"] != again


def test_the_system_check_names_an_email_backend_that_cannot_be_imported(settings):
    from channels.checks import check_channel_backends

    settings.CHANNEL_BACKENDS = {
        "email": {
            "BACKEND": "channels.backends.email.EmailBackend",
            "OPTIONS": {"EMAIL_BACKEND": "anymail.backends.nope.EmailBackend"},
        }
    }
    messages = [e.msg for e in check_channel_backends()]
    assert any("DEFAULT_FROM" in m for m in messages)
    assert any("cannot import EMAIL_BACKEND 'anymail.backends.nope.EmailBackend'" in m for m in messages)


# --- django-anymail ------------------------------------------------------------------------


def use_anymail(settings, backend: str, **connection) -> None:
    settings.CHANNEL_BACKENDS = {
        "email": {
            "BACKEND": "channels.backends.email.EmailBackend",
            "OPTIONS": {"EMAIL_BACKEND": backend, "CONNECTION": connection, "DEFAULT_FROM": SENDER},
        }
    }


@pytest.fixture
def esp_answers():
    """What anymail's test backend answers: set ``answer[0]`` before sending."""
    answer: list = [None]

    def handler(sender, message, esp_name, **kw):
        if answer[0] is not None:
            message.anymail_test_response = answer[0]

    pre_send.connect(handler)
    yield answer
    pre_send.disconnect(handler)


def test_anymail_gets_the_headers_and_the_html_alternative_and_its_id_is_kept(settings):
    use_anymail(settings, "anymail.backends.test.EmailBackend")
    message = deliver(queue())
    [sent] = mail.outbox
    params = sent.anymail_test_params
    assert params["from"].address == SENDER
    assert [to.addr_spec for to in params["to"]] == [TO]
    assert params["subject"] == "Welcome to Acme"
    assert params["text_body"] == "Hello Ada, thanks for joining."
    assert params["html_body"] == "<p>Hello Ada, thanks for joining.</p>"
    headers = params["extra_headers"]
    assert headers["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@acme.example>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["X-Herald-Message"] == str(message.pk)
    assert headers["Message-ID"].startswith("<herald.")
    # The test ESP's id for the first email in its outbox is 0, not our Message-ID.
    assert sent.anymail_status.message_id == 0
    assert message.provider_message_id == "0"


def test_postmark_through_anymail_is_configuration_only_and_keeps_postmarks_id(settings):
    use_anymail(settings, "anymail.backends.postmark.EmailBackend", server_token="pm-server-token")
    with responses.RequestsMock() as mock:
        mock.post(
            POSTMARK_URL,
            json={
                "To": TO,
                "SubmittedAt": "2025-03-04T10:00:00.1234567-05:00",
                "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                "ErrorCode": 0,
                "Message": "OK",
            },
        )
        message = deliver(queue())
        request = mock.calls[0].request
    assert request.headers["X-Postmark-Server-Token"] == "pm-server-token"
    body = json.loads(request.body)
    assert (body["From"], body["To"], body["Subject"]) == (SENDER, TO, "Welcome to Acme")
    assert body["HtmlBody"] == "<p>Hello Ada, thanks for joining.</p>"
    headers = {h["Name"]: h["Value"] for h in body["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (message.status, message.provider_message_id) == ("sent", "b7bc2f4a-e38e-4336-af7d-e6c392c2f817")


def test_recipients_refused_by_the_esp_fail_and_suppress_the_address(
    settings, esp_answers, dead_addresses, django_capture_on_commit_callbacks
):
    use_anymail(settings, "anymail.backends.test.EmailBackend")
    esp_answers[0] = {"recipient_status": {TO: AnymailRecipientStatus(message_id=None, status="rejected")}}
    with django_capture_on_commit_callbacks(execute=True):
        message = deliver(queue())
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "recipient_refused")
    assert dead_addresses == [("email", TO, "hard_bounce")]


@pytest.mark.parametrize(
    ("answer", "status", "outcome"),
    [
        ({"status": 500, "json": {"ErrorCode": 100, "Message": "Maintenance"}}, MessageStatus.QUEUED, "retry"),
        ({"status": 429, "json": {"ErrorCode": 429, "Message": "Rate limit exceeded"}}, MessageStatus.QUEUED, "retry"),
        (
            {"status": 422, "json": {"ErrorCode": 300, "Message": "Invalid 'From' address: 'shop@acme'."}},
            MessageStatus.FAILED,
            "failed",
        ),
        ({"body": requests.ConnectionError("refused")}, MessageStatus.QUEUED, "retry"),
        ({"body": requests.ReadTimeout("no answer")}, MessageStatus.UNKNOWN, "unknown"),
    ],
    ids=["5xx", "429", "4xx", "unreachable", "read-timeout"],
)
def test_esp_api_errors_map_to_retry_failure_or_unknown(settings, answer, status, outcome):
    use_anymail(settings, "anymail.backends.postmark.EmailBackend", server_token="pm-server-token")
    with responses.RequestsMock() as mock:
        mock.post(POSTMARK_URL, **answer)
        message = deliver(queue())
    assert message.status == status
    assert list(message.attempts_log.values_list("outcome", flat=True)) == [outcome]


def test_an_esp_429_is_retried_after_its_retry_after(settings):
    use_anymail(settings, "anymail.backends.postmark.EmailBackend", server_token="pm-server-token")
    now = timezone.now()
    with responses.RequestsMock() as mock:
        mock.post(POSTMARK_URL, status=429, headers={"Retry-After": "90"}, json={"ErrorCode": 429, "Message": "Slow"})
        message = deliver(send_message(kind="email", address=TO, idempotency_key="r", text="Hi", now=now), now=now)
    assert message.next_attempt_at == now + timedelta(seconds=90)


def test_amazon_ses_throttling_without_a_status_code_is_retried(settings, esp_answers):
    class ClientError(Exception):  # botocore's shape: the parsed error in ``response``
        response = {
            "Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    use_anymail(settings, "anymail.backends.test.EmailBackend")
    error = AnymailAPIError("Amazon SES: Maximum sending rate exceeded.")
    error.__cause__ = ClientError()
    esp_answers[0] = error
    message = deliver(queue())
    assert (message.status, message.error_code) == (MessageStatus.QUEUED, "Throttling")


# --- anymail tracking -----------------------------------------------------------------------


@pytest.fixture
def tracked():
    anymail_tracking.connect()
    yield
    anymail_tracking.disconnect()


def sent_email(provider_id: str = "pm-1") -> Message:
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=provider_id)
    return message


def track(event_type: str, message_id: str = "pm-1", **fields) -> None:
    fields.setdefault("timestamp", datetime(2025, 3, 4, 10, 0, tzinfo=UTC))
    event = AnymailTrackingEvent(event_type=event_type, message_id=message_id, recipient=TO, **fields)
    tracking.send(sender=object, event=event, esp_name="Postmark")


def test_tracking_events_become_delivery_events_and_move_the_message_forward(tracked):
    message = sent_email()
    track("delivered", event_id="ev-1", esp_event={"RecordType": "Delivery"})
    track("opened", event_id="ev-2", timestamp=datetime(2025, 3, 4, 10, 5, tzinfo=UTC))
    track("clicked", event_id="ev-3", timestamp=datetime(2025, 3, 4, 10, 6, tzinfo=UTC))
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    assert message.opened_at == datetime(2025, 3, 4, 10, 5, tzinfo=UTC)
    assert message.clicked_at == datetime(2025, 3, 4, 10, 6, tzinfo=UTC)
    delivered = message.events.get(kind="delivered")
    assert (delivered.provider_event_id, delivered.raw) == ("ev-1", {"RecordType": "Delivery"})


def test_the_esps_id_from_a_real_send_finds_the_message(settings, tracked):
    use_anymail(settings, "anymail.backends.test.EmailBackend")
    message = deliver(queue())
    track("delivered", message_id=mail.outbox[0].anymail_status.message_id, event_id="ev-1")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_a_repeated_event_counts_once_with_or_without_an_event_id(tracked):
    message = sent_email()
    for _ in range(2):
        track("delivered", event_id="ev-1")
        track("opened")  # no event id: the digest of id, type and time stands in
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1
    assert DeliveryEvent.objects.filter(message=message, kind="opened").count() == 1


@pytest.mark.parametrize(
    ("event_type", "fields", "status", "reason"),
    [
        ("bounced", {"reject_reason": "bounced"}, MessageStatus.BOUNCED, "hard_bounce"),
        ("complained", {}, MessageStatus.SENT, "complaint"),
        ("unsubscribed", {}, MessageStatus.SENT, "opted_out"),
        ("rejected", {"reject_reason": "invalid"}, MessageStatus.FAILED, "invalid_address"),
    ],
)
def test_bounces_complaints_and_opt_outs_report_the_address_dead(
    tracked, dead_addresses, django_capture_on_commit_callbacks, event_type, fields, status, reason
):
    message = sent_email()
    with django_capture_on_commit_callbacks(execute=True):
        track(event_type, event_id="ev-9", mta_response="550 5.1.1 No such user", **fields)
    message.refresh_from_db()
    assert message.status == status
    assert dead_addresses == [("email", TO, reason)]


def test_deferred_events_and_emails_we_did_not_send_change_nothing(tracked, dead_addresses):
    message = sent_email()
    track("deferred", event_id="ev-1")
    track("unknown", event_id="ev-2")
    track("delivered", message_id="not-ours", event_id="ev-3")
    assert list(message.events.values_list("kind", flat=True)) == ["queued"]


def test_a_raw_event_that_is_not_json_is_kept_as_its_repr(tracked):
    message = sent_email()
    track("delivered", event_id="ev-1", esp_event=object())
    raw = message.events.get(kind="delivered").raw
    assert raw["repr"].startswith("<object object at")
