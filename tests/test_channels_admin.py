from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels.actions import deliver_message, record_event, send_message
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt

pytestmark = pytest.mark.django_db

LOCMEM = "channels.backends.locmem.LocmemBackend"
CHANGELIST = "admin:channels_message_changelist"


@pytest.fixture(autouse=True)
def configured(settings):
    settings.CHANNEL_BACKENDS = {
        "email": {"BACKEND": LOCMEM},
        "sms-us": {"BACKEND": LOCMEM, "KIND": "sms"},
        "telegram": {"BACKEND": LOCMEM},
        "dlr": {"BACKEND": "tests.channel_doubles.JsonProviderWithReceipts", "KIND": "sms", "OPTIONS": {"TOKEN": "t0k"}},
    }


def make(key: str, *, alias: str = "sms-us", kind: str = "sms", **fields: object) -> Message:
    address = "ada@example.com" if kind == "email" else "+12025550143"
    message = send_message(kind=kind, alias=alias, address=address, subject="Hi", text="Hello", idempotency_key=key)
    if fields:
        Message.objects.filter(pk=message.pk).update(**fields)
        message.refresh_from_db()
    return message


def unknown(key: str = "lost") -> Message:
    return make(key, status=MessageStatus.UNKNOWN, needs_decision=True, error="The provider did not answer in time.")


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return html.unescape(response.content.decode())


def notes(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def staff_with(*codenames: str) -> Client:
    user = User.objects.create_user("grace", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="channels", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, action: str, *messages: Message, model: str = "message"):
    url = reverse(f"admin:channels_{model}_changelist")
    return client.post(url, {"action": action, "index": 0, "_selected_action": [m.pk for m in messages]}, follow=True)


# --- the list -------------------------------------------------------------------


def test_the_message_list_shows_every_status_and_filters_by_alias_and_status(admin_client):
    queued = make("a")
    sent = make("b", alias="email", kind="email", status=MessageStatus.SENT, sent_at=timezone.now())
    failed = make("c", alias="email", kind="email", status=MessageStatus.FAILED, error="Mailbox unavailable (550)")
    lost = unknown("d")
    retired = make("e", alias="sms-us", status=MessageStatus.DELIVERED)
    Message.objects.filter(pk=retired.pk).update(alias="twilio-old")

    content = page(admin_client, reverse(CHANGELIST))
    for label in ("Queued", "Sent", "Failed", "Outcome unknown", "Delivered", "needs a decision"):
        assert label in content
    assert "Mailbox unavailable (550)" in content
    assert "sms-us (SMS)" in content and "telegram (Telegram)" in content
    assert "twilio-old (not configured)" in content
    assert "Messages: 1 with an unknown outcome needs a decision" in content

    def listed(query: str) -> set[int]:
        return {m.pk for m in admin_client.get(reverse(CHANGELIST) + query).context["cl"].result_list}

    assert listed("?alias=email") == {sent.pk, failed.pk}
    assert listed("?alias=email&status__exact=failed") == {failed.pk}
    assert listed("?alias=sms-us") == {queued.pk, lost.pk}
    assert listed("?alias=twilio-old") == {retired.pk}
    assert listed("?decision=needed") == {lost.pk}
    assert listed("?q=%2B12025550143") == {queued.pk, lost.pk, retired.pk}


def test_the_list_costs_the_same_queries_for_three_messages_as_for_thirty(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            admin_client.get(reverse(CHANGELIST))
        return len(captured)

    for i in range(3):
        make(f"few-{i}")
    few = queries()
    for i in range(27):
        make(f"many-{i}", status=MessageStatus.SENT)
    assert queries() == few


# --- the change page --------------------------------------------------------------


def test_the_change_page_shows_attempts_events_and_the_html_in_a_sandbox(admin_client, channel_backends):
    html_part = '<p>Your order shipped</p><script>alert("owned")</script>'
    message = send_message(
        kind="email",
        address="ada@example.com",
        subject="Shipped",
        text="Your order shipped",
        html=html_part,
        data={"headers": {"X-Campaign": "shipping"}},
        idempotency_key="shipped-1",
    )
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    record_event(
        message=message,
        kind="delivered",
        occurred_at=timezone.now(),
        provider_event_id="dlr-77",
        raw={"event": "delivered", "smtp": "250 2.0.0 OK"},
        detail="Accepted by the mailbox",
    )
    response = admin_client.get(reverse("admin:channels_message_change", args=[message.pk]))
    assert response.status_code == 200
    raw = response.content.decode()
    content = html.unescape(raw)
    assert "locmem-1" in content  # the provider's id
    assert "herald:queued" in content and "dlr-77" in content and "Accepted by the mailbox" in content
    assert '"smtp": "250 2.0.0 OK"' in content
    assert '"X-Campaign": "shipping"' in content
    attempts = content[content.index('id="attempts_log-group"') : content.index('id="events-group"')]
    assert re.search(r"<p>1</p>.*<p>Sent</p>", attempts, re.S)  # one attempt, and the provider took it

    iframe = re.search(r"<iframe [^>]*>", raw).group(0)
    assert 'sandbox=""' in iframe
    srcdoc = re.search(r'srcdoc="([^"]*)"', iframe).group(1)
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in srcdoc
    assert "Content-Security-Policy" in html.unescape(srcdoc)
    assert "<script>alert" not in raw  # neither in the preview nor in the source view


def test_nobody_adds_edits_or_deletes_a_message_here(admin_client):
    message = make("x")
    assert admin_client.get(reverse("admin:channels_message_add")).status_code == 403
    change = reverse("admin:channels_message_change", args=[message.pk])
    assert admin_client.post(change, {"address": "+447700900123"}).status_code == 403
    assert admin_client.get(reverse("admin:channels_message_delete", args=[message.pk])).status_code == 403
    response = admin_client.get(reverse(CHANGELIST))
    assert "delete_selected" not in response.context["action_form"].fields["action"].choices.__repr__()
    message.refresh_from_db()
    assert message.address == "+12025550143"


# --- unknown outcomes -----------------------------------------------------------


def test_resend_action_queues_an_unknown_message_again_and_leaves_a_sent_one(admin_client, channel_backends):
    lost = unknown()
    sent = make("fine", status=MessageStatus.SENT)
    response = act(admin_client, "resend_unknown", lost, sent)
    assert "Queued 1 message to be sent again." in notes(response)
    assert "1 message left as it was: no unknown outcome to decide." in notes(response)
    lost.refresh_from_db()
    assert (lost.status, lost.needs_decision) == (MessageStatus.QUEUED, False)
    assert deliver_message(message_id=lost.pk).startswith("sent")
    assert [m.id for m in channel_backends] == [lost.pk]
    sent.refresh_from_db()
    assert sent.status == MessageStatus.SENT


def test_close_action_fails_an_unknown_message_in_the_staff_members_name(admin_client, channel_backends):
    lost = unknown()
    queued = make("waiting")
    response = act(admin_client, "close_unknown", lost, queued)
    assert "Closed 1 message as failed, not resent." in notes(response)
    lost.refresh_from_db()
    assert lost.status == MessageStatus.FAILED
    assert lost.error == "Closed by admin after an unknown outcome; not resent."
    assert DeliveryEvent.objects.filter(message=lost, kind="failed").exists()
    queued.refresh_from_db()
    assert queued.status == MessageStatus.QUEUED
    assert channel_backends == []


def test_the_decision_buttons_appear_on_a_message_that_needs_one_and_want_a_csrf_post(admin_client):
    lost = unknown()
    resend = reverse("admin:channels_message_resend", args=[lost.pk])
    close = reverse("admin:channels_message_close", args=[lost.pk])
    content = page(admin_client, reverse("admin:channels_message_change", args=[lost.pk]))
    assert resend in content and close in content
    assert "Herald could not learn whether sms-us got this message" in content

    sent = make("fine", status=MessageStatus.SENT)
    assert "/resend/" not in page(admin_client, reverse("admin:channels_message_change", args=[sent.pk]))

    assert admin_client.get(resend).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="admin"))
    assert strict.post(resend).status_code == 403
    lost.refresh_from_db()
    assert lost.status == MessageStatus.UNKNOWN

    response = admin_client.post(resend)
    assert response.status_code == 302 and response.url == reverse("admin:channels_message_change", args=[lost.pk])
    lost.refresh_from_db()
    assert lost.status == MessageStatus.QUEUED


def test_the_close_button_refuses_a_message_whose_outcome_is_known(admin_client):
    sent = make("fine", status=MessageStatus.SENT)
    response = admin_client.post(reverse("admin:channels_message_close", args=[sent.pk]), follow=True)
    assert notes(response) == ["1 message left as it was: no unknown outcome to decide."]
    sent.refresh_from_db()
    assert (sent.status, sent.error) == (MessageStatus.SENT, "")


def test_staff_who_may_only_view_messages_cannot_decide_or_send_tests():
    lost = unknown()
    client = staff_with("view_message")
    content = page(client, reverse("admin:channels_message_change", args=[lost.pk]))
    assert "/resend/" not in content
    assert "herald:queued" in content  # the events come with the message, no separate permission
    assert "Send a test message" not in page(client, reverse(CHANGELIST))
    assert client.post(reverse("admin:channels_message_resend", args=[lost.pk])).status_code == 403
    act(client, "resend_unknown", lost)
    assert client.get(reverse("admin:channels_message_test")).status_code == 403
    lost.refresh_from_db()
    assert lost.status == MessageStatus.UNKNOWN


# --- a test message ----------------------------------------------------------------


def test_the_test_page_lists_every_configured_alias_with_its_kind(admin_client):
    test_url = reverse("admin:channels_message_test")
    assert test_url in page(admin_client, reverse(CHANGELIST))
    response = admin_client.get(test_url)
    choices = dict(response.context["form"].fields["alias"].choices)
    assert choices == {
        "": "---------",
        "email": "email (Email)",
        "sms-us": "sms-us (SMS)",
        "telegram": "telegram (Telegram)",
        "dlr": "dlr (SMS)",
    }
    # The overview runs the system check's per-backend check: dlr's TOKEN is set.
    assert {row["alias"]: row["problems"] for row in response.context["channels"]}["dlr"] == "ok"


def test_a_test_message_is_queued_and_goes_out_through_its_backend(
    admin_client, channel_backends, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueues:
        response = admin_client.post(
            reverse("admin:channels_message_test"),
            {"alias": "sms-us", "address": " +12025550143 ", "text": "Testing the US number"},
        )
    message = Message.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:channels_message_change", args=[message.pk])
    assert (message.kind, message.alias, message.status) == ("sms", "sms-us", MessageStatus.QUEUED)
    assert message.idempotency_key.startswith("test:") and len(message.idempotency_key) == len("test:") + 36
    assert message.data == {"test": True, "requested_by": "admin"}
    assert len(enqueues) == 1
    assert deliver_message(message_id=message.pk).startswith("sent")
    assert [(m.address, m.text) for m in channel_backends] == [("+12025550143", "Testing the US number")]
    assert notes(admin_client.get(response.url))[0].startswith(f"Test message #{message.pk} queued through sms-us.")


def test_two_identical_test_sends_make_two_messages(admin_client):
    form = {"alias": "telegram", "address": "123456789", "text": "ping"}
    admin_client.post(reverse("admin:channels_message_test"), form)
    admin_client.post(reverse("admin:channels_message_test"), form)
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        ({"alias": "nope", "address": "", "text": "x"}, ["No channel nope is configured", "Enter the address to send"]),
        ({"alias": "email", "address": "ada@example.com", "text": "x"}, ["An email needs a subject."]),
        ({"alias": "sms-us", "address": "   ", "text": ""}, ["Enter the address", "Enter the text"]),
    ],
)
def test_the_test_page_says_what_is_wrong_with_the_form(admin_client, form, errors):
    response = admin_client.post(reverse("admin:channels_message_test"), form)
    assert response.status_code == 200
    content = html.unescape(response.content.decode())
    for error in errors:
        assert error in content
    assert "Please correct the errors below." in content
    assert not Message.objects.exists()


def test_an_alias_without_a_valid_kind_is_listed_but_cannot_send(admin_client, settings):
    settings.CHANNEL_BACKENDS = {"broken": {"BACKEND": LOCMEM}}
    response = admin_client.post(reverse("admin:channels_message_test"), {"alias": "broken", "address": "x", "text": "y"})
    content = html.unescape(response.content.decode())
    assert "broken (misconfigured)" in content
    assert "This channel cannot send: CHANNEL_BACKENDS['broken'] needs a KIND" in content
    assert not Message.objects.exists()


# --- receipts ----------------------------------------------------------------------


def receipt(body: bytes, status: str = Receipt.Status.PENDING, **fields: object) -> Receipt:
    headers = {"Content-Type": "application/json", "X-Test-Signature": hmac.new(b"t0k", body, hashlib.sha256).hexdigest()}
    return Receipt.objects.create(alias="dlr", headers=headers, body=body, status=status, received_at=timezone.now(), **fields)


def test_replaying_a_failed_receipt_puts_it_back_to_pending_and_it_is_processed(
    admin_client, django_capture_on_commit_callbacks
):
    message = make("dlr-1", alias="dlr", status=MessageStatus.SENT, provider_message_id="p-1")
    body = json.dumps({"id": "p-1", "status": "delivered", "event_id": "ev-1"}).encode()
    failed = receipt(body, Receipt.Status.FAILED, error="No channel backend 'dlr' in CHANGE_BACKENDS.", attempts=1)
    processed = receipt(b"{}", Receipt.Status.PROCESSED, result="nothing to record")
    with django_capture_on_commit_callbacks() as enqueues:
        response = act(admin_client, "replay_selected", failed, processed, model="receipt")
    assert "Queued 1 receipt to be processed again." in notes(response)
    assert "1 receipt left as it was: only failed ones are replayed." in notes(response)
    assert len(enqueues) == 1
    failed.refresh_from_db()
    processed.refresh_from_db()
    assert (failed.status, failed.processed_at) == (Receipt.Status.PENDING, None)
    assert processed.status == Receipt.Status.PROCESSED

    assert process_receipt(receipt_id=failed.pk) == f"delivered for message {message.pk}"
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_the_replay_button_shows_on_a_failed_receipt_only(admin_client):
    failed = receipt(b"not json", Receipt.Status.FAILED, error="The receipt is not JSON.")
    pending = receipt(b"{}")
    replay = reverse("admin:channels_receipt_replay", args=[failed.pk])
    assert replay in page(admin_client, reverse("admin:channels_receipt_change", args=[failed.pk]))
    assert "/replay/" not in page(admin_client, reverse("admin:channels_receipt_change", args=[pending.pk]))
    assert admin_client.post(replay).status_code == 302
    failed.refresh_from_db()
    assert failed.status == Receipt.Status.PENDING


def test_receipt_bodies_are_shown_decoded_and_escaped(admin_client):
    form = Receipt.objects.create(
        alias="twilio-old",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"MessageSid=SM123&MessageStatus=delivered&ErrorCode=",
        received_at=timezone.now(),
    )
    content = page(admin_client, reverse("admin:channels_receipt_change", args=[form.pk]))
    assert "form fields (name, value)" in content and '"MessageStatus",' in content and '"SM123"' in content

    hostile = receipt(b"<script>alert(1)</script>\xff\xfe")
    response = admin_client.get(reverse("admin:channels_receipt_change", args=[hostile.pk]))
    assert b"<script>alert(1)" not in response.content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\ufffd\ufffd" in response.content.decode()

    listed = admin_client.get(reverse("admin:channels_receipt_changelist") + "?alias=twilio-old")
    assert [r.pk for r in listed.context["cl"].result_list] == [form.pk]
    assert admin_client.get(reverse("admin:channels_receipt_delete", args=[form.pk])).status_code == 403


def test_rejected_receipts_are_a_read_only_log(admin_client):
    rejected = RejectedReceipt.objects.create(
        alias="dlr",
        status_code=401,
        reason="X-Test-Signature does not match.",
        headers={"X-Test-Signature": "bad"},
        body_excerpt='{"id": "p-1"}',
        received_at=timezone.now() - timedelta(minutes=5),
    )
    content = page(admin_client, reverse("admin:channels_rejectedreceipt_changelist") + "?alias=dlr")
    assert "X-Test-Signature does not match." in content
    assert '"id": "p-1"' in page(admin_client, reverse("admin:channels_rejectedreceipt_change", args=[rejected.pk]))
    assert admin_client.get(reverse("admin:channels_rejectedreceipt_add")).status_code == 403
