from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from urllib.parse import parse_qs, parse_qsl, quote_plus, urlencode, urlsplit

import pytest
import requests
import responses
import time_machine
from django.utils import timezone

from channels import signals
from channels.actions import deliver_message, send_message
from channels.backends.base import OutgoingMessage
from channels.backends.twilio import twilio_signature
from channels.models import DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.receipts import process_receipt
from channels.registry import backends
from channels.upkeep import reconcile_message
from tests.conftest import fixture_bytes, load_fixture

pytestmark = pytest.mark.django_db

SID = "AC3f9c2e0d4b5a67891c2d3e4f5a6b7c8d"
TOKEN = "9f2b6c1d8e7a4b3c2d1e0f9a8b7c6d5e"
API = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
SEND_URL = f"{API}/Messages.json"
MESSAGE_SID = "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0"
PUBLIC = "https://herald.example.com"
RECEIPTS = "/channels/receipts/twilio/"
CUSTOMER = "+12025550143"
TEXT = "Your order #1001 has shipped. Track it: https://shop.example.com/t/1001"


def options(**extra: str) -> dict[str, str]:
    base = {"ACCOUNT_SID": SID, "AUTH_TOKEN": TOKEN, "FROM": "+15005550006", "DEFAULT_REGION": "US", "RATE_LIMIT": "100/s"}
    return {**base, **extra}


def configure(settings, **extra: str) -> None:
    settings.CHANNEL_BACKENDS = {
        "twilio": {"BACKEND": "channels.backends.twilio.TwilioBackend", "KIND": "sms", "OPTIONS": options(**extra)}
    }


@pytest.fixture
def twilio(settings):
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


def queue(address: str = CUSTOMER, key: str = "order-1001-shipped", **extra) -> Message:
    return send_message(kind="sms", alias="twilio", address=address, text=TEXT, idempotency_key=key, **extra)


def form(request) -> dict[str, str]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return dict(parse_qsl(body, keep_blank_values=True))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def signature(url: str, body: bytes, token: str = TOKEN) -> str:
    """Twilio's documented scheme: the full URL, then every POST parameter's name and
    value in name order; HMAC-SHA1 keyed with the auth token; base64."""
    signed = url + "".join(name + value for name, value in sorted(parse_qsl(body.decode(), keep_blank_values=True)))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def post_receipt(client, body: bytes, url: str = PUBLIC + RECEIPTS, token: str = TOKEN):
    return client.generic(
        "POST",
        RECEIPTS,
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature(url, body, token),
    )


def sent_message() -> Message:
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, provider_message_id=MESSAGE_SID)
    return message


def process_all() -> list[str]:
    return [process_receipt(receipt_id=pk) for pk in Receipt.objects.order_by("pk").values_list("pk", flat=True)]


# --- sending -------------------------------------------------------------------------------


def test_the_exact_form_reaches_twilio_with_basic_auth_and_our_status_callback(twilio):
    twilio.post(SEND_URL, status=201, json=load_fixture("twilio", "message_created.json"))
    message = queue(address="(202) 555-0143")
    assert deliver_message(message_id=message.pk).startswith("sent")
    request = twilio.calls[0].request
    assert form(request) == {
        "To": CUSTOMER,
        "From": "+15005550006",
        "Body": TEXT,
        "StatusCallback": "https://herald.example.com/channels/receipts/twilio/",
    }
    assert request.headers["Authorization"] == basic(SID, TOKEN)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", MESSAGE_SID)


def test_a_messaging_service_and_an_api_key_replace_from_and_the_account_credentials(twilio, settings):
    configure(
        settings,
        FROM="",
        MESSAGING_SERVICE_SID="MG9752274e9e519418a7406176694466fa",
        API_KEY_SID="SK2a0747eba6abf96b7e3c3ff0b4530f6e",
        API_KEY_SECRET="s3cr3t",
        STATUS_CALLBACK_URL="https://hooks.example.net/twilio/",
    )
    twilio.post(SEND_URL, status=201, json=load_fixture("twilio", "message_created.json"))
    deliver_message(message_id=queue().pk)
    request = twilio.calls[0].request
    assert form(request) == {
        "To": CUSTOMER,
        "MessagingServiceSid": "MG9752274e9e519418a7406176694466fa",
        "Body": TEXT,
        "StatusCallback": "https://hooks.example.net/twilio/",
    }
    assert request.headers["Authorization"] == basic("SK2a0747eba6abf96b7e3c3ff0b4530f6e", "s3cr3t")


def test_an_impossible_number_fails_without_a_request_and_is_reported_dead(
    twilio, dead_addresses, django_capture_on_commit_callbacks
):
    message = queue(address="+1 202 555 01")
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error.startswith("The phone number +1 202 555 01 is not valid")
    assert len(twilio.calls) == 0
    assert [(kind, reason) for kind, _, reason, _ in dead_addresses] == [("sms", "invalid_address")]


def test_a_national_number_without_a_default_region_fails_but_is_not_reported_dead(
    twilio, settings, dead_addresses, django_capture_on_commit_callbacks
):
    configure(settings, DEFAULT_REGION="")
    message = queue(address="202-555-0143")
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "set OPTIONS['DEFAULT_REGION']" in message.error
    assert dead_addresses == []


TWILIO_SAYS = {
    21211: "The 'To' number +12025550143 is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +12025550143.",
    21606: "The 'From' phone number provided (+15005550006) is not a valid message-capable Twilio phone number.",
    21659: "'From' +15005550006 is not a Twilio phone number or Short Code country mismatch",
    20003: "Authenticate",
    20429: "Too Many Requests",
    30001: "Queue overflow",
    20500: "Internal Server Error",
}


@pytest.mark.parametrize(
    "http, code, status, dead, words",
    [
        (400, 21211, "failed", "invalid_address", "not a valid phone number"),
        (400, 21610, "failed", "opted_out", "replied STOP"),
        (400, 21614, "failed", "invalid_address", "not a mobile number"),
        (400, 21408, "failed", None, "Geo permissions"),
        (400, 21606, "failed", None, "SMS-capable Twilio number"),
        (400, 21659, "failed", None, "not a Twilio number of this account"),
        (401, 20003, "failed", None, "check ACCOUNT_SID and AUTH_TOKEN"),
        (429, 20429, "queued", None, "will retry"),
        (400, 30001, "queued", None, "queue for this sender overflowed"),
        (500, 20500, "queued", None, "will retry"),
    ],
)
def test_twilio_errors_fail_retry_or_kill_the_address_as_documented(
    twilio, dead_addresses, django_capture_on_commit_callbacks, http, code, status, dead, words
):
    body = {"code": code, "message": TWILIO_SAYS[code], "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": http}
    twilio.post(SEND_URL, status=http, json=body, headers={"Retry-After": "30"})
    now = timezone.now()
    message = queue(now=now)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk, now=now)
    message.refresh_from_db()
    assert message.status == status
    assert words in message.error
    if status == "failed":
        assert message.error_code == str(code)
        assert message.error.endswith(f"({code}).")
    else:
        assert message.next_attempt_at == now + timedelta(seconds=30)
    assert [reason for _, _, reason, _ in dead_addresses] == ([dead] if dead else [])


def test_429_then_201_is_sent_after_the_retry_after_twilio_asked_for(twilio):
    twilio.post(SEND_URL, status=429, headers={"Retry-After": "120"}, json={"code": 20429, "message": "Too Many Requests"})
    twilio.post(SEND_URL, status=201, json=load_fixture("twilio", "message_created.json"))
    now = timezone.now()
    message = queue(now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=119)).startswith("not due")
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=120)).startswith("sent")
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", MESSAGE_SID)
    assert list(message.attempts_log.values_list("outcome", "response_code")) == [("retry", 429), ("sent", 201)]


def test_a_21610_send_failure_reports_the_address_opted_out(twilio, dead_addresses, django_capture_on_commit_callbacks):
    twilio.post(SEND_URL, status=400, body=fixture_bytes("twilio", "error_21610.json"), content_type="application/json")
    message = queue()
    with django_capture_on_commit_callbacks(execute=True):
        deliver_message(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert dead_addresses == [("sms", CUSTOMER, "opted_out", message)]


# --- settling an unknown outcome -------------------------------------------------------------


@time_machine.travel("2026-11-17 15:04:00+00:00", tick=False)
def test_a_timed_out_send_is_settled_by_finding_its_text_among_the_numbers_messages(twilio):
    twilio.post(SEND_URL, body=requests.ReadTimeout("read timed out"))
    message = queue()
    assert deliver_message(message_id=message.pk) == "unknown"
    twilio.get(SEND_URL, json=load_fixture("twilio", "messages_list.json"))
    assert reconcile_message(message_id=message.pk, now=timezone.now()) == "settled: delivered"
    lookup = twilio.calls[1].request
    assert lookup.method == "GET"
    assert parse_qs(urlsplit(lookup.url).query) == {
        "To": [CUSTOMER],
        "DateSent>": ["2026-11-16"],
        "PageSize": ["50"],
        "From": ["+15005550006"],
    }
    assert lookup.headers["Authorization"] == basic(SID, TOKEN)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


@time_machine.travel("2026-11-17 15:04:00+00:00", tick=False)
def test_two_messages_with_the_same_text_settle_nothing(twilio):
    twilio.post(SEND_URL, body=requests.ReadTimeout("read timed out"))
    message = queue()
    deliver_message(message_id=message.pk)
    listing = load_fixture("twilio", "messages_list.json")
    listing["messages"][1]["body"] = TEXT
    twilio.get(SEND_URL, json=listing)
    assert reconcile_message(message_id=message.pk, now=timezone.now()) == "still unknown"
    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN


@pytest.mark.parametrize(
    "twilio_status, verdict", [("delivered", "delivered"), ("sent", "sent"), ("undelivered", "failed"), ("failed", "failed"), ("sending", None)]
)
def test_a_known_sid_is_looked_up_directly(twilio, twilio_status, verdict):
    found = dict(load_fixture("twilio", "message_created.json"), status=twilio_status)
    twilio.get(f"{API}/Messages/{MESSAGE_SID}.json", json=found)
    outgoing = OutgoingMessage(
        id=1, kind="sms", alias="twilio", address=CUSTOMER, idempotency_key="k", text=TEXT, provider_message_id=MESSAGE_SID
    )
    assert backends["twilio"].fetch_status(outgoing) == verdict


# --- receipts ----------------------------------------------------------------------------------


def test_our_signature_matches_twilios_documented_examples():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309", "To": "+18005551212", "Caller": "+14158675309"}
    assert twilio_signature("12345", url, list(params.items())) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature(url, urlencode(params).encode(), "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_a_signed_status_callback_is_answered_with_empty_twiml_and_recorded_once_when_repeated(twilio, client):
    message = sent_message()
    body = fixture_bytes("twilio", "status_delivered.txt")
    for _ in range(2):
        response = post_receipt(client, body)
        assert response.status_code == 200
        assert response["Content-Type"] == "text/xml"
        assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert process_all() == [f"delivered for message {message.pk}", f"delivered for message {message.pk} (already recorded)"]
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    event = DeliveryEvent.objects.get(message=message, kind="delivered")
    assert event.provider_event_id == f"{MESSAGE_SID}:delivered"


def test_a_callback_signed_with_another_token_is_401_and_kept_in_the_rejected_log(twilio, client):
    response = post_receipt(client, fixture_bytes("twilio", "status_delivered.txt"), token="not-our-token")
    assert response.status_code == 401
    assert not Receipt.objects.exists()
    assert RejectedReceipt.objects.get().reason.startswith("X-Twilio-Signature does not match; check AUTH_TOKEN")


def test_an_unsigned_callback_is_401(twilio, client):
    body = fixture_bytes("twilio", "status_delivered.txt")
    response = client.generic("POST", RECEIPTS, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401
    assert "Missing the X-Twilio-Signature header" in response.json()["error"]


@pytest.mark.parametrize(
    "signed_url, accepted",
    [
        ("https://hooks.example.net/channels/receipts/twilio/", True),
        ("https://hooks.example.net:443/channels/receipts/twilio/", True),
        ("http://testserver/channels/receipts/twilio/", True),
        ("https://herald.example.com/channels/receipts/twilio/", False),
        ("https://hooks.example.net/channels/receipts/other/", False),
    ],
)
def test_the_signature_is_checked_against_the_url_twilio_called_through_a_proxy(
    twilio, settings, client, signed_url, accepted
):
    configure(settings, STATUS_CALLBACK_URL="https://hooks.example.net/channels/receipts/twilio/")
    response = post_receipt(client, fixture_bytes("twilio", "status_delivered.txt"), url=signed_url)
    assert response.status_code == (200 if accepted else 401)


def test_a_late_sent_after_delivered_leaves_the_message_delivered(twilio, client):
    message = sent_message()
    post_receipt(client, fixture_bytes("twilio", "status_delivered.txt"))
    post_receipt(client, fixture_bytes("twilio", "status_sent.txt"))
    process_all()
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert set(message.events.values_list("kind", flat=True)) == {"queued", "sent", "delivered"}


@pytest.mark.parametrize(
    "status, code, dead",
    [
        ("undelivered", "30003", "invalid_address"),
        ("undelivered", "30005", "invalid_address"),
        ("undelivered", "30006", "invalid_address"),
        ("undelivered", "30004", "opted_out"),
        ("failed", "21610", "opted_out"),
        ("undelivered", "30007", None),
    ],
)
def test_an_undelivered_callback_fails_the_message_with_twilios_reason(
    twilio, client, dead_addresses, django_capture_on_commit_callbacks, status, code, dead
):
    message = sent_message()
    body = fixture_bytes("twilio", "status_undelivered.txt")
    body = body.replace(b"ErrorCode=30003", f"ErrorCode={code}".encode()).replace(b"=undelivered", f"={status}".encode())
    post_receipt(client, body)
    with django_capture_on_commit_callbacks(execute=True):
        process_all()
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error.startswith(f"Twilio: {status} (error {code}: ")
    assert dead_addresses == ([("sms", CUSTOMER, dead, message)] if dead else [])


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled"])
def test_callbacks_before_the_carrier_has_it_record_nothing(twilio, client, status):
    message = sent_message()
    body = fixture_bytes("twilio", "status_sent.txt").replace(b"=sent", f"={status}".encode())
    post_receipt(client, body)
    assert process_all() == ["nothing to record"]
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


@pytest.mark.parametrize("reply", ["Stop", " stop ", "STOPALL", "unsubscribe", "Cancel", "END", "quit"])
def test_an_inbound_stop_reports_the_sender_opted_out(
    twilio, client, dead_addresses, django_capture_on_commit_callbacks, reply
):
    body = fixture_bytes("twilio", "inbound_stop.txt").replace(b"Body=Stop", b"Body=" + quote_plus(reply).encode())
    response = post_receipt(client, body)
    assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    with django_capture_on_commit_callbacks(execute=True):
        assert process_all() == [f"opt-out from {CUSTOMER}"]
    assert dead_addresses == [("sms", CUSTOMER, "opted_out", None)]


@pytest.mark.parametrize(
    "reply, opt_out_type, opted_out",
    [("Arrêt", "STOP", True), ("STOP", "START", False), ("Stop sending me the wrong size", None, False)],
)
def test_twilios_advanced_opt_out_type_decides_over_the_keyword_list(
    twilio, client, dead_addresses, django_capture_on_commit_callbacks, reply, opt_out_type, opted_out
):
    body = fixture_bytes("twilio", "inbound_stop.txt").replace(b"Body=Stop", b"Body=" + quote_plus(reply).encode())
    if opt_out_type:
        body += f"&OptOutType={opt_out_type}".encode()
    post_receipt(client, body)
    with django_capture_on_commit_callbacks(execute=True):
        process_all()
    assert dead_addresses == ([("sms", CUSTOMER, "opted_out", None)] if opted_out else [])


def test_the_system_check_names_what_is_missing_or_wrong(settings):
    settings.CHANNEL_BACKENDS = {
        "twilio": {
            "BACKEND": "channels.backends.twilio.TwilioBackend",
            "KIND": "sms",
            "OPTIONS": {"ACCOUNT_SID": SID, "API_KEY_SID": "SK1", "DEFAULT_REGION": "USA", "STATUS_CALLBACK_URL": "hooks/"},
        }
    }
    assert backends["twilio"].check() == [
        "is missing the option AUTH_TOKEN",
        "has DEFAULT_REGION 'USA', which is not a two-letter country code such as 'US' or 'GB'",
        "needs FROM (a Twilio number such as '+15017122661') or MESSAGING_SERVICE_SID",
        "needs both API_KEY_SID and API_KEY_SECRET, or neither",
        "has STATUS_CALLBACK_URL 'hooks/', which is not an absolute http(s) URL",
    ]
    limits = backends["twilio"].rate_limits(OutgoingMessage(id=1, kind="sms", alias="twilio", address=CUSTOMER, idempotency_key="k"))
    assert [(key, limit.count, limit.seconds) for key, limit in limits] == [("alias:twilio", 1.0, 1.0)]
