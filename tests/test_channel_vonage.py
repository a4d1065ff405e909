from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest
import responses
from django.utils import timezone

from channels import signals
from channels.actions import deliver_message, send_message
from channels.backends.vonage import vonage_signature
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt
from channels.registry import backends
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db

SMS_URL = "https://rest.nexmo.com/sms/json"
PUBLIC = "https://herald.example.com"
RECEIPTS = "/channels/receipts/vonage/"
TOKEN = "r3ceipt t0ken/1"
CUSTOMER = "+447911123456"
MESSAGE_ID = "0A0000001234ABCD"
TEXT = "Your order #1001 has shipped. Track it: https://shop.example.com/t/1001"


def configure(settings, **extra: str) -> None:
    options = {
        "API_KEY": "a1b2c3d4",
        "API_SECRET": "Zx9Wv8Ut7Sr6Qp5O",
        "FROM": "AcmeShop",
        "DEFAULT_REGION": "GB",
        "RECEIPT_TOKEN": TOKEN,
        "RATE_LIMIT": "100/s",
        **extra,
    }
    settings.CHANNEL_BACKENDS = {
        "vonage": {"BACKEND": "channels.backends.vonage.VonageBackend", "KIND": "sms", "OPTIONS": options}
    }


@pytest.fixture
def vonage(settings):
    settings.HERALD_PUBLIC_URL = PUBLIC
    configure(settings)
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def dead_addresses():
    seen: list[tuple] = []

    def handler(sender, **kw):
        seen.append((kw["kind"], kw["address"], kw["reason"], kw["message"]))

    signals.address_dead.connect(handler)
    yield seen
    signals.address_dead.disconnect(handler)


def queue(address: str = CUSTOMER, key: str = "order-1001-shipped", text: str = TEXT, **extra) -> Message:
    return send_message(kind="sms", alias="vonage", address=address, text=text, idempotency_key=key, **extra)


def form(request) -> dict[str, str]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return dict(parse_qsl(body, keep_blank_values=True))


def sent_message() -> Message:
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=MESSAGE_ID)
    return message


def documented_sig(params: dict[str, str], secret: str, method: str) -> str:
    """Vonage's documented recipe: "&name=value" per parameter sorted by name, "&" and "="
    in values as "_"; MD5 of that plus the secret, or an HMAC keyed with the secret."""
    data = "".join(f"&{k}={v.replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()))
    if method == "md5hash":
        return hashlib.md5((data + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), data.encode(), method).hexdigest()


def post_json(client, payload: dict, query: str = urlencode({"token": TOKEN})):
    return client.generic("POST", f"{RECEIPTS}?{query}", json.dumps(payload).encode(), content_type="application/json")


def process_all() -> list[str]:
    return [process_receipt(receipt_id=pk) for pk in Receipt.objects.order_by("pk").values_list("pk", flat=True)]


# --- sending -------------------------------------------------------------------------------


def test_the_exact_form_reaches_vonage_with_our_reference_and_tokened_callback(vonage):
    vonage.post(SMS_URL, json=load_fixture("vonage", "sms_accepted.json"))
    message = queue(address="07911 123456")
    assert deliver_message(message_id=message.pk).startswith("sent")
    request = vonage.calls[0].request
    assert form(request) == {
        "api_key": "a1b2c3d4",
        "api_secret": "Zx9Wv8Ut7Sr6Qp5O",
        "from": "AcmeShop",
        "to": "447911123456",
        "text": TEXT,
        "type": "text",
        "client-ref": "order-1001-shipped",
        "callback": "https://herald.example.com/channels/receipts/vonage/?token=r3ceipt%20t0ken%2F1",
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", MESSAGE_ID)


def test_text_outside_gsm_goes_as_unicode_and_a_long_key_is_hashed_to_forty_characters(vonage, settings):
    configure(settings, FROM="+447700900123", SIGNATURE_SECRET="s1gn", CALLBACK_URL="https://hooks.example.net/dlr")
    vonage.post(SMS_URL, json=load_fixture("vonage", "sms_accepted.json"))
    key = "flow-7:run-123456789:step-shipped-notice:variant-b"
    deliver_message(message_id=queue(key=key, text="Ваш заказ отправлен 📦").pk)
    sent = form(vonage.calls[0].request)
    assert (sent["from"], sent["type"], sent["text"]) == ("447700900123", "unicode", "Ваш заказ отправлен 📦")
    assert sent["client-ref"] == hashlib.sha256(key.encode()).hexdigest()[:40]
    # Signed receipts need no token in the callback.
    assert sent["callback"] == "https://hooks.example.net/dlr"


def test_gsm_extension_characters_stay_plain_text(vonage):
    vonage.post(SMS_URL, json=load_fixture("vonage", "sms_accepted.json"))
    deliver_message(message_id=queue(text="Ends 23h: 20€ off [code: {HAPPY}] ~ café à Zürich | ^\\o/").pk)
    assert form(vonage.calls[0].request)["type"] == "text"


@pytest.mark.parametrize(
    "code, error_text, status, dead, words",
    [
        ("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry", "queued", None, "throttled"),
        ("2", "Missing to param", "failed", None, "lacks a parameter"),
        ("3", "Invalid from param", "failed", None, "parameter is invalid"),
        ("4", "Bad Credentials", "failed", None, "check API_KEY and API_SECRET"),
        ("5", "Internal Error", "queued", None, "internal error"),
        ("6", "Unroutable message - rejected", "failed", "invalid_address", "cannot route"),
        ("7", "Number barred.", "failed", "opted_out", "barred list"),
        ("8", "Account suspended", "failed", None, "suspended the account"),
        ("9", "Quota Exceeded - rejected", "failed", None, "top it up"),
        ("15", "Illegal Sender Address - rejected", "failed", None, "as the sender"),
        ("29", "Non White-listed Destination - rejected", "failed", None, "demo mode"),
    ],
)
def test_vonage_status_codes_fail_retry_or_kill_the_address_as_documented(
    vonage, dead_addresses, django_capture_on_commit_callbacks, code, error_text, status, dead, words
):
    vonage.post(SMS_URL, json={"message-count": "1", "messages": [{"status": code, "error-text": error_text}]})
    now = timezone.now()
    message = queue(now=now)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk, now=now)
    message.refresh_from_db()
    assert message.status == status
    assert words in message.error
    assert error_text.rstrip(".") in message.error
    if status == "failed":
        assert message.error_code == code
    assert [reason for _, _, reason, _ in dead_addresses] == ([dead] if dead else [])
    if code == "1":
        assert message.next_attempt_at == now + timedelta(seconds=1)


def test_a_long_text_counts_as_sent_under_its_first_parts_id(vonage):
    vonage.post(SMS_URL, json=load_fixture("vonage", "sms_long_accepted.json"))
    message = queue(text=TEXT * 3)
    deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", "0A0000001234ABCE")


# --- receipts ----------------------------------------------------------------------------------


def test_our_signature_matches_vonages_documented_examples():
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage_signature("secret", "md5hash", params) == "6af838ef94998832dbfc29020b564830"
    assert vonage_signature("secret", "md5", params) == "c15c21ced558c93a226c305f58f902f2"
    assert vonage_signature("secret", "sha256", params) == "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24"
    assert documented_sig(params, "secret", "sha256") == "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24"


def test_a_tokened_receipt_is_recorded_once_at_vonages_timestamp_even_when_repeated(vonage, client):
    message = sent_message()
    receipt = load_fixture("vonage", "dlr_delivered.json")
    assert post_json(client, receipt).status_code == 200
    assert post_json(client, receipt).status_code == 200
    assert process_all() == [f"delivered for message {message.pk}", f"delivered for message {message.pk} (already recorded)"]
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.delivered_at == datetime(2026, 11, 17, 15, 4, 9, tzinfo=UTC)
    assert DeliveryEvent.objects.get(message=message, kind="delivered").provider_event_id == f"{MESSAGE_ID}:delivered"


@pytest.mark.parametrize("query", ["", "token=guess", urlencode({"token": TOKEN + "x"})])
def test_a_receipt_without_the_right_token_is_401(vonage, client, query):
    response = post_json(client, load_fixture("vonage", "dlr_delivered.json"), query=query)
    assert response.status_code == 401
    assert not Receipt.objects.exists()
    assert "token is missing or wrong" in RejectedReceipt.objects.get().reason


def test_receipts_are_refused_when_neither_a_signature_secret_nor_a_token_is_set(vonage, settings, client):
    configure(settings, RECEIPT_TOKEN="")
    response = post_json(client, load_fixture("vonage", "dlr_delivered.json"), query="token=")
    assert response.status_code == 401
    assert response.json()["error"] == "Receipts are not taken unauthenticated; set SIGNATURE_SECRET or RECEIPT_TOKEN."


@pytest.mark.parametrize("method", ["md5hash", "sha256"])
def test_a_signed_json_receipt_is_accepted_and_a_tampered_one_is_401(vonage, settings, client, method):
    configure(settings, RECEIPT_TOKEN="", SIGNATURE_SECRET="sUp3rS3cret", SIGNATURE_METHOD=method)
    message = sent_message()
    receipt = dict(load_fixture("vonage", "dlr_delivered.json"), timestamp="1794927849", nonce="6d3e1b2a-f0c4")
    receipt["sig"] = documented_sig(receipt, "sUp3rS3cret", method)
    assert post_json(client, receipt, query="").status_code == 200
    tampered = dict(receipt, status="failed")
    assert post_json(client, tampered, query="").status_code == 401
    assert "sig does not match" in RejectedReceipt.objects.get().reason
    process_all()
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_a_signed_form_receipt_is_accepted(vonage, settings, client):
    configure(settings, RECEIPT_TOKEN="", SIGNATURE_SECRET="sUp3rS3cret", SIGNATURE_METHOD="sha256")
    receipt = dict(load_fixture("vonage", "dlr_delivered.json"), timestamp="1794927849", nonce="6d3e1b2a-f0c4")
    receipt["sig"] = documented_sig(receipt, "sUp3rS3cret", "sha256").upper()
    body = urlencode(receipt).encode()
    response = client.generic("POST", RECEIPTS, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


def test_an_unsigned_receipt_is_401_when_signatures_are_expected(vonage, settings, client):
    configure(settings, SIGNATURE_SECRET="sUp3rS3cret")
    response = post_json(client, load_fixture("vonage", "dlr_delivered.json"))
    assert response.status_code == 401
    assert "has no sig" in response.json()["error"]


def test_a_late_accepted_after_delivered_leaves_the_message_delivered(vonage, client):
    message = sent_message()
    delivered = load_fixture("vonage", "dlr_delivered.json")
    post_json(client, delivered)
    post_json(client, dict(delivered, status="accepted"))
    process_all()
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


@pytest.mark.parametrize(
    "status, err_code, dead, meaning",
    [
        ("failed", "3", "invalid_address", "absent subscriber, permanent: the number is no longer active"),
        ("rejected", "9", "opted_out", "illegal number: the user asked not to receive messages from this service"),
        ("failed", "4", "opted_out", "call barred by the user"),
        ("expired", "2", None, "absent subscriber, temporary"),
        ("rejected", "6", None, "anti-spam rejection"),
    ],
)
def test_a_failed_receipt_fails_the_message_with_vonages_reason(
    vonage, client, dead_addresses, django_capture_on_commit_callbacks, status, err_code, dead, meaning
):
    message = sent_message()
    post_json(client, dict(load_fixture("vonage", "dlr_failed.json"), status=status, **{"err-code": err_code}))
    with django_capture_on_commit_callbacks(execute=True):
        process_all()
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error == f"Vonage: {status} (err-code {err_code}: {meaning})"
    assert dead_addresses == ([("sms", CUSTOMER, dead, message)] if dead else [])


def test_an_unknown_receipt_records_nothing(vonage, client):
    message = sent_message()
    post_json(client, dict(load_fixture("vonage", "dlr_delivered.json"), status="unknown"))
    assert process_all() == ["nothing to record"]
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


def test_a_receipt_that_is_not_a_delivery_receipt_is_kept_and_failed(vonage, client):
    post_json(client, {"msisdn": "447911123456", "text": "hello"})
    assert process_all() == ["failed: Not a Vonage delivery receipt: it has no messageId and status."]


def test_the_system_check_names_what_is_missing_or_wrong(settings):
    settings.CHANNEL_BACKENDS = {
        "vonage": {
            "BACKEND": "channels.backends.vonage.VonageBackend",
            "KIND": "sms",
            "OPTIONS": {"API_KEY": "a1b2c3d4", "FROM": "AcmeShop", "SIGNATURE_METHOD": "sha384"},
        }
    }
    assert backends["vonage"].check() == [
        "is missing the option API_SECRET",
        "needs SIGNATURE_SECRET (signed webhooks) or RECEIPT_TOKEN to authenticate delivery receipts",
        "has SIGNATURE_METHOD 'sha384'; use one of md5hash, md5, sha1, sha256, sha512",
    ]


def test_a_receipt_sent_as_get_is_verified_stored_and_recorded_without_its_token(client, settings):
    from urllib.parse import urlencode

    from channels.actions import send_message
    from channels.models import Message, Receipt
    from channels.receipts import process_receipt

    settings.CHANNEL_BACKENDS = {
        "vonage": {
            "BACKEND": "channels.backends.vonage.VonageBackend",
            "KIND": "sms",
            "OPTIONS": {"API_KEY": "k", "API_SECRET": "s", "FROM": "Herald", "RECEIPT_TOKEN": "r3c3ipt"},
        }
    }
    message = send_message(kind="sms", alias="vonage", address="+447700900123", text="hi", idempotency_key="get-1")
    Message.objects.filter(pk=message.pk).update(status="sent", provider_message_id="0A0000000123ABCD1")
    params = {
        "msisdn": "447700900123",
        "to": "Herald",
        "messageId": "0A0000000123ABCD1",
        "status": "delivered",
        "err-code": "0",
        "message-timestamp": "2026-11-23 12:00:00",
    }
    assert client.get("/channels/receipts/vonage/?" + urlencode({**params, "token": "wrong"})).status_code == 401
    assert client.get("/channels/receipts/vonage/?" + urlencode({**params, "token": "r3c3ipt"})).status_code == 200
    receipt = Receipt.objects.get()
    assert "r3c3ipt" not in receipt.query
    process_receipt(receipt_id=receipt.pk)
    message.refresh_from_db()
    assert message.status == "delivered"
