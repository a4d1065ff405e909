from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.utils import timezone

from channels import signals
from channels.actions import send_message
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt

pytestmark = pytest.mark.django_db

ALIAS = "provider"
URL = f"/channels/receipts/{ALIAS}/"


@pytest.fixture(autouse=True)
def provider(settings):
    settings.CHANNEL_BACKENDS = {
        ALIAS: {"BACKEND": "tests.channel_doubles.JsonProviderWithReceipts", "KIND": "sms", "OPTIONS": {"TOKEN": "t0k"}}
    }


def signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"HTTP_X_TEST_SIGNATURE": hmac.new(b"t0k", body, hashlib.sha256).hexdigest()}


def sent_message() -> Message:
    message = send_message(kind="sms", alias=ALIAS, address="+12025550143", text="hi", idempotency_key="k")
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id="p-1")
    return message


def post_receipt(client, payload):
    body, headers = signed(payload)
    return client.generic("POST", URL, body, content_type="application/json", **headers)


def test_a_signed_receipt_is_stored_then_recorded_once_even_when_repeated(client):
    message = sent_message()
    payload = {"id": "p-1", "status": "delivered", "event_id": "ev-9"}
    assert post_receipt(client, payload).status_code == 200
    assert post_receipt(client, payload).status_code == 200
    assert Receipt.objects.count() == 2
    for receipt in Receipt.objects.all():
        process_receipt(receipt_id=receipt.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1
    assert list(Receipt.objects.values_list("status", flat=True)) == ["processed", "processed"]


def test_an_unsigned_receipt_is_401_and_kept_in_the_capped_log(client):
    response = client.generic("POST", URL, b'{"id": "p-1"}', content_type="application/json")
    assert response.status_code == 401
    assert not Receipt.objects.exists()
    assert RejectedReceipt.objects.get().reason == "Missing the X-Test-Signature header."


def test_a_receipt_for_an_unknown_alias_is_404(client):
    assert client.post("/channels/receipts/nobody/", b"{}", content_type="application/json").status_code == 404


def test_an_unreadable_signed_receipt_is_kept_and_failed_with_its_reason(client):
    body = b"not json"
    headers = {"HTTP_X_TEST_SIGNATURE": hmac.new(b"t0k", body, hashlib.sha256).hexdigest()}
    assert client.generic("POST", URL, body, content_type="text/plain", **headers).status_code == 200
    receipt = Receipt.objects.get()
    assert process_receipt(receipt_id=receipt.pk) == "failed: The receipt is not JSON."
    receipt.refresh_from_db()
    assert receipt.status == "failed"
    assert bytes(receipt.body) == body


def test_a_receipt_before_the_send_is_recorded_waits_for_it(client):
    post_receipt(client, {"id": "p-1", "status": "delivered", "event_id": "ev-1"})
    receipt = Receipt.objects.get()
    assert process_receipt(receipt_id=receipt.pk).startswith("Waiting for the send")
    message = sent_message()
    assert process_receipt(receipt_id=receipt.pk) == f"delivered for message {message.pk}"


def test_an_inbound_stop_reports_the_address_as_opted_out(client, django_capture_on_commit_callbacks):
    seen = []
    handler = lambda sender, **kw: seen.append((kw["kind"], kw["address"], kw["reason"], kw["message"]))  # noqa: E731
    signals.address_dead.connect(handler)
    try:
        post_receipt(client, {"type": "inbound", "from": "+12025550143", "text": " stop "})
        with django_capture_on_commit_callbacks(execute=True):
            process_receipt(receipt_id=Receipt.objects.get().pk, now=timezone.now())
    finally:
        signals.address_dead.disconnect(handler)
    assert seen == [("sms", "+12025550143", "opted_out", None)]
