from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from channels import signals as channel_signals
from channels.models import Message
from marketing import receivers
from marketing.consent import consent_status, set_consent
from marketing.models import ContactPoint, Suppression
from marketing.suppression import import_suppressions_csv, is_suppressed, normalise_value, suppress
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def marketing_receivers():
    was_connected = receivers.disconnect()
    receivers.connect()
    yield
    if not was_connected:
        receivers.disconnect()


def dead(kind, address, reason, detail="The provider said so."):
    channel_signals.address_dead.send(Message, kind=kind, address=address, reason=reason, detail=detail, message=None)


# --- lookups ------------------------------------------------------------------------


def test_an_exact_address_is_suppressed_whatever_its_case():
    suppress(value="Jane.Doe@Example.COM", channel="email", reason="manual", detail="", now=NOW)
    row = is_suppressed("email", "jane.doe@example.com")
    assert row is not None and row.value == "jane.doe@example.com"
    assert is_suppressed("email", "JANE.DOE@EXAMPLE.COM") == row
    assert is_suppressed("email", "john.doe@example.com") is None


def test_a_domain_pattern_covers_the_domain_but_not_its_subdomains():
    suppress(value="*@Competitor.example", channel="email", reason="manual", now=NOW)
    assert is_suppressed("email", "anyone@competitor.example").value == "*@competitor.example"
    assert is_suppressed("email", "anyone@mail.competitor.example") is None
    assert is_suppressed("email", "anyone@notcompetitor.example") is None


def test_a_subdomain_pattern_covers_every_subdomain_but_not_the_domain_itself():
    suppress(value="*@*.corp.example", channel="email", reason="manual", now=NOW)
    assert is_suppressed("email", "a@mail.corp.example").value == "*@*.corp.example"
    assert is_suppressed("email", "a@x.y.corp.example").value == "*@*.corp.example"
    assert is_suppressed("email", "a@corp.example") is None


def test_an_exact_match_is_reported_before_a_pattern_and_a_channel_row_before_an_all_channels_row():
    suppress(value="*@example.com", channel="", reason="manual", now=NOW)
    suppress(value="ann@example.com", channel="", reason="complaint", now=NOW)
    suppress(value="ann@example.com", channel="email", reason="hard_bounce", now=NOW)
    assert is_suppressed("email", "ann@example.com").reason == "hard_bounce"


def test_a_row_for_one_channel_leaves_the_others_alone_and_an_empty_channel_means_all():
    suppress(value="+1 (415) 555-0100", channel="sms", reason="opted_out", now=NOW)
    assert is_suppressed("sms", "+14155550100").value == "+14155550100"
    assert is_suppressed("whatsapp", "+14155550100") is None
    suppress(value="+442071838750", channel="", reason="manual", now=NOW)
    assert is_suppressed("whatsapp", "+44 20 7183 8750") is not None
    assert is_suppressed("sms", "+442071838750") is not None


def test_suppressing_twice_keeps_the_first_reason():
    first = suppress(value="a@example.com", channel="email", reason="hard_bounce", detail="550 no such user", now=NOW)
    again = suppress(value="A@example.com", channel="email", reason="manual", now=NOW)
    assert first.pk == again.pk
    assert Suppression.objects.get().reason == "hard_bounce"


def test_web_push_subscriptions_are_matched_by_their_endpoint():
    endpoint = "https://fcm.googleapis.com/fcm/send/abc123"
    stored = json.dumps({"endpoint": endpoint, "keys": {"p256dh": "BN...", "auth": "xyz"}})
    reencoded = json.dumps({"keys": {"auth": "xyz", "p256dh": "BN..."}, "endpoint": endpoint}, indent=2)
    suppress(value=stored, channel="web_push", reason="unregistered", now=NOW)
    assert Suppression.objects.get().value == endpoint
    assert is_suppressed("web_push", reencoded) is not None


def test_a_value_longer_than_the_column_is_stored_as_its_digest():
    token = "t" * 800
    assert normalise_value("mobile_push", token).startswith("sha256:")
    suppress(value=token, channel="mobile_push", reason="unregistered", now=NOW)
    assert is_suppressed("mobile_push", token) is not None
    assert is_suppressed("mobile_push", "t" * 799) is None


# --- CSV import -------------------------------------------------------------------


def test_csv_import_keeps_good_rows_and_reports_bad_ones_by_line():
    csv_text = (
        "value,channel,reason\n"
        "Bounced@Example.com,email,hard_bounce\n"
        "*@spamtrap.example,,\n"
        "not an email@,email,\n"
        "+1 415 555 0101,sms,opted_out\n"
        "0415,sms,\n"
        "\n"
        "someone@example.com,fax,\n"
        "other@example.com,email,because\n"
        "device-token-1,mobile_push,unregistered\n"
        ",email,\n"
    )
    report = import_suppressions_csv(io.StringIO(csv_text), now=NOW)

    assert (report.added, report.already) == (4, 0)
    assert [(p.line, p.message) for p in report.problems] == [
        (4, "'not an email@' is not an email address (or a pattern like *@example.com)."),
        (6, "'0415' is not a phone number in international format (+ and the country code)."),
        (8, "'fax' is not a channel; use one of email, sms, whatsapp, viber, telegram, messenger, line, "
            "mobile_push, web_push, or leave it empty."),
        (9, "'because' is not a reason; use one of hard_bounce, complaint, opted_out, invalid_address, "
            "unregistered, manual, import."),
        (11, "The value is empty."),
    ]  # fmt: skip
    rows = set(Suppression.objects.values_list("value", "channel", "reason"))
    assert rows == {
        ("bounced@example.com", "email", "hard_bounce"),
        ("*@spamtrap.example", "", "import"),
        ("+14155550101", "sms", "opted_out"),
        ("device-token-1", "mobile_push", "unregistered"),
    }
    assert "4 added, 0 already on the list, 5 refused." in report.summary()
    assert "Line 4 (not an email@,email,)" in report.summary()


def test_csv_without_a_header_reads_value_channel_reason_and_a_repeat_import_adds_nothing():
    data = b"\xef\xbb\xbfa@example.com\nb@example.com,email\nb@example.com,email\n+14155550102,,manual\n"
    upload = SimpleUploadedFile("list.csv", data, content_type="text/csv")
    report = import_suppressions_csv(upload, now=NOW)
    assert (report.added, report.already, report.problems) == (3, 1, [])
    assert is_suppressed("sms", "+14155550102").reason == "manual"
    assert is_suppressed("telegram", "a@example.com") is not None  # no channel: every channel

    again = import_suppressions_csv(io.BytesIO(data), now=NOW, default_reason="manual")
    assert (again.added, again.already) == (0, 4)
    assert Suppression.objects.count() == 3


def test_a_header_may_name_the_columns_in_any_order():
    report = import_suppressions_csv(io.StringIO("reason,email\ncomplaint,c@example.com\n"), now=NOW)
    assert report.added == 1
    assert Suppression.objects.get().reason == "complaint"


def test_a_file_that_is_not_utf8_is_refused_in_words():
    report = import_suppressions_csv(io.BytesIO("café@example.com".encode("utf-16")), now=NOW)
    assert report.added == 0
    assert report.problems[0].message == "The file is not UTF-8 text; save it as CSV UTF-8 and try again."


# --- dead addresses from channels ------------------------------------------------------


def test_a_hard_bounce_suppresses_the_email_and_leaves_consent(marketing_receivers):
    customer = CustomerFactory(email="gone@example.com")
    set_consent(customer=customer, channel="email", status="subscribed", source="shop", now=NOW)
    dead("email", "Gone@Example.com", "hard_bounce", "550 5.1.1 user unknown")
    row = is_suppressed("email", "gone@example.com")
    assert (row.reason, row.channel, row.detail) == ("hard_bounce", "email", "550 5.1.1 user unknown")
    assert consent_status(customer, "email") == "subscribed"


def test_a_complaint_suppresses_the_email_and_unsubscribes_its_owner(marketing_receivers):
    customer = CustomerFactory(email="angry@example.com")
    set_consent(customer=customer, channel="email", status="subscribed", source="shop", now=NOW)
    dead("email", "angry@example.com", "complaint", "Marked as spam")
    assert is_suppressed("email", "angry@example.com").reason == "complaint"
    consent = customer.consents.get(channel="email")
    assert (consent.status, consent.source, consent.detail) == ("unsubscribed", "provider", "Marked as spam")


def test_an_sms_stop_suppresses_the_number_in_sms_only_and_unsubscribes_everyone_with_that_phone(marketing_receivers):
    first = CustomerFactory(phone="+14155550103", phone_valid=True)
    second = CustomerFactory(phone="+14155550103", phone_valid=True)
    for customer in (first, second):
        set_consent(customer=customer, channel="sms", status="subscribed", source="shop", now=NOW)
        set_consent(customer=customer, channel="whatsapp", status="subscribed", source="staff", now=NOW)
    dead("sms", "+14155550103", "opted_out", "The customer replied STOP.")
    assert is_suppressed("sms", "+14155550103").reason == "opted_out"
    assert is_suppressed("whatsapp", "+14155550103") is None
    assert [consent_status(c, "sms") for c in (first, second)] == ["unsubscribed", "unsubscribed"]
    assert consent_status(first, "whatsapp") == "subscribed"


def test_an_opt_out_from_a_chat_user_unsubscribes_the_contact_points_owner(marketing_receivers):
    customer = CustomerFactory()
    ContactPoint.objects.create(
        customer=customer, channel="viber", address="01234567890A=", created_at=NOW, updated_at=NOW
    )
    set_consent(customer=customer, channel="viber", status="subscribed", source="staff", now=NOW)
    dead("viber", "01234567890A=", "opted_out")
    assert consent_status(customer, "viber") == "unsubscribed"
    assert is_suppressed("viber", "01234567890A=").reason == "opted_out"


def test_an_unregistered_push_token_is_suppressed_and_its_contact_point_marked_invalid(marketing_receivers):
    customer = CustomerFactory()
    point = ContactPoint.objects.create(
        customer=customer, channel="mobile_push", address="fcm-token-1", created_at=NOW, updated_at=NOW
    )
    other = ContactPoint.objects.create(
        customer=customer, channel="mobile_push", address="fcm-token-2", created_at=NOW, updated_at=NOW
    )
    set_consent(customer=customer, channel="mobile_push", status="subscribed", source="staff", now=NOW)
    dead("mobile_push", "fcm-token-1", "unregistered", "UNREGISTERED")
    point.refresh_from_db()
    other.refresh_from_db()
    assert (point.is_valid, other.is_valid) == (False, True)
    assert is_suppressed("mobile_push", "fcm-token-1").reason == "unregistered"
    assert consent_status(customer, "mobile_push") == "subscribed"


def test_an_invalid_number_is_suppressed_without_touching_consent(marketing_receivers):
    customer = CustomerFactory(phone="+14155550104", phone_valid=True)
    set_consent(customer=customer, channel="sms", status="subscribed", source="shop", now=NOW)
    dead("sms", "+14155550104", "invalid_address", "Twilio says the number is not a mobile number")
    assert is_suppressed("sms", "+14155550104").reason == "invalid_address"
    assert consent_status(customer, "sms") == "subscribed"


def test_the_same_dead_address_reported_twice_is_listed_once(marketing_receivers):
    dead("email", "twice@example.com", "hard_bounce")
    dead("email", "twice@example.com", "complaint")
    assert list(Suppression.objects.values_list("value", "reason")) == [("twice@example.com", "hard_bounce")]
