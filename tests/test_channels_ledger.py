from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import requests
import responses
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels import signals
from channels.actions import deliver_message, record_event, send_message
from channels.backends import locmem
from channels.models import DeliveryAttempt, DeliveryEvent, Message, MessageStatus
from channels.upkeep import claim_due_messages, close_message, expire_stale_sends, reconcile_message, resend_message
from tests.channel_doubles import ENDPOINT

pytestmark = pytest.mark.django_db

PROVIDER = {"BACKEND": "tests.channel_doubles.JsonProvider", "KIND": "sms", "OPTIONS": {"TOKEN": "t0k"}}


@pytest.fixture
def provider(settings):
    settings.CHANNEL_BACKENDS = {**settings.CHANNEL_BACKENDS, "provider": PROVIDER}
    with responses.RequestsMock() as mock:
        yield mock


def queue(key: str = "k1", alias: str | None = None, **extra) -> Message:
    return send_message(kind="sms", alias=alias, address="+12025550143", text="Hello", idempotency_key=key, **extra)


def test_asking_twice_with_one_key_makes_one_message():
    first = queue()
    second = queue()
    assert first.pk == second.pk
    assert Message.objects.count() == 1
    assert first.status == MessageStatus.QUEUED


def test_a_sent_message_is_never_sent_again_even_if_the_task_runs_twice(channel_backends):
    message = queue()
    assert deliver_message(message_id=message.pk).startswith("sent")
    assert deliver_message(message_id=message.pk).startswith("not due")
    assert len(channel_backends) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts, message.provider_message_id) == ("sent", 1, "locmem-1")
    assert list(message.attempts_log.values_list("outcome", flat=True)) == ["sent"]
    assert list(message.events.values_list("kind", flat=True)) == ["queued", "sent"]


def test_the_exact_request_reaches_the_provider(provider):
    provider.post(ENDPOINT, json={"id": "prov-1"})
    message = queue(alias="provider")
    deliver_message(message_id=message.pk)
    request = provider.calls[0].request
    assert json.loads(request.body) == {"to": "+12025550143", "body": "Hello", "reference": "k1"}
    assert request.headers["Authorization"] == "Bearer t0k"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", "prov-1")


def test_429_then_200_is_retried_after_retry_after(provider):
    provider.post(ENDPOINT, status=429, headers={"Retry-After": "120"}, json={"error": "slow down"})
    provider.post(ENDPOINT, json={"id": "prov-2"})
    now = timezone.now()
    message = queue(alias="provider", now=now)
    assert deliver_message(message_id=message.pk, now=now).startswith("retry at")
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED
    assert message.next_attempt_at == now + timedelta(seconds=120)
    # Not yet due one second before the provider's Retry-After.
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=119)).startswith("not due")
    assert deliver_message(message_id=message.pk, now=now + timedelta(seconds=120)).startswith("sent")
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    attempts = list(message.attempts_log.values_list("outcome", "response_code"))
    assert attempts == [("retry", 429), ("sent", 200)]


def test_5xx_retries_with_growing_backoff_until_the_time_limit(provider):
    for _ in range(3):
        provider.post(ENDPOINT, status=503, body="down")
    now = timezone.now()
    message = queue(alias="provider", now=now, max_age=timedelta(minutes=2))
    deliver_message(message_id=message.pk, now=now)
    message.refresh_from_db()
    first_wait = (message.next_attempt_at - now).total_seconds()
    assert 24 <= first_wait <= 36  # 30 s +/- 20 % jitter
    later = message.next_attempt_at
    deliver_message(message_id=message.pk, now=later)
    message.refresh_from_db()
    assert 48 <= (message.next_attempt_at - later).total_seconds() <= 72
    deliver_message(message_id=message.pk, now=message.next_attempt_at)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "next try would pass its time limit" in message.error


def test_permanent_error_fails_and_reports_the_dead_address(provider, django_capture_on_commit_callbacks):
    provider.post(ENDPOINT, status=400, json={"error": "The number is not a mobile number", "code": "dead"})
    seen = []
    handler = lambda sender, **kw: seen.append((kw["kind"], kw["address"], kw["reason"]))  # noqa: E731
    signals.address_dead.connect(handler)
    try:
        message = queue(alias="provider")
        with django_capture_on_commit_callbacks(execute=True):
            deliver_message(message_id=message.pk)
    finally:
        signals.address_dead.disconnect(handler)
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert message.error == "The number is not a mobile number"
    assert message.error_code == "dead"
    assert seen == [("sms", "+12025550143", "invalid_address")]


def test_a_read_timeout_is_unknown_and_is_not_retried_blindly(provider):
    provider.post(ENDPOINT, body=requests.ReadTimeout("no answer"))
    message = queue(alias="provider")
    assert deliver_message(message_id=message.pk) == "unknown"
    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN
    assert message.reconcile_at is not None
    assert claim_due_messages(now=timezone.now() + timedelta(hours=2)) == []


def test_the_status_api_settles_an_unknown_outcome(provider):
    provider.post(ENDPOINT, body=requests.ReadTimeout("no answer"))
    provider.get(f"{ENDPOINT}?reference=k1", json={"status": "delivered"})
    message = queue(alias="provider")
    deliver_message(message_id=message.pk)
    assert reconcile_message(message_id=message.pk, now=timezone.now()) == "settled: delivered"
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_an_unknown_outcome_nothing_settles_waits_for_a_person_who_resends_or_closes(provider):
    provider.post(ENDPOINT, body=requests.ReadTimeout("no answer"))
    provider.get(f"{ENDPOINT}?reference=k1", json={"status": "unheard-of"})
    provider.get(f"{ENDPOINT}?reference=k1", json={"status": "unheard-of"})
    provider.post(ENDPOINT, json={"id": "prov-3"})
    now = timezone.now()
    message = queue(alias="provider", now=now)
    deliver_message(message_id=message.pk, now=now)
    assert reconcile_message(message_id=message.pk, now=now + timedelta(minutes=5)) == "still unknown"
    assert reconcile_message(message_id=message.pk, now=now + timedelta(hours=2)) == "needs a person's decision"
    message.refresh_from_db()
    assert message.needs_decision

    assert resend_message(message_id=message.pk, now=now + timedelta(hours=2))
    deliver_message(message_id=message.pk, now=now + timedelta(hours=2))
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.needs_decision) == ("sent", "prov-3", False)


def test_closing_an_unknown_message_fails_it_with_who_closed_it():
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.UNKNOWN, needs_decision=True)
    assert close_message(message_id=message.pk, by="ada")
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert "Closed by ada" in message.error


def test_a_worker_that_vanished_mid_send_leaves_the_message_unknown_not_resent(channel_backends):
    message = queue()
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENDING, lease_until=now - timedelta(seconds=1))
    assert expire_stale_sends(now=now) == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.UNKNOWN
    assert deliver_message(message_id=message.pk, now=now).startswith("not due")
    assert channel_backends == []


def test_an_expired_message_fails_without_sending(channel_backends):
    now = timezone.now()
    message = queue(now=now - timedelta(days=2))
    assert deliver_message(message_id=message.pk, now=now) == "expired"
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "expired")
    assert channel_backends == []


def test_a_burst_over_the_rate_limit_waits_instead_of_failing(settings, channel_backends):
    settings.CHANNEL_BACKENDS = {
        "sms": {"BACKEND": "channels.backends.locmem.LocmemBackend", "OPTIONS": {"RATE_LIMIT": "1/s"}}
    }
    first, second = queue("a"), queue("b")
    now = timezone.now()
    assert deliver_message(message_id=first.pk, now=now).startswith("sent")
    answer = deliver_message(message_id=second.pk, now=now)
    assert answer.startswith("rate limited")
    second.refresh_from_db()
    assert second.status == MessageStatus.QUEUED
    assert second.attempts == 0
    assert 0 < (second.next_attempt_at - now).total_seconds() <= 1.0
    assert len(channel_backends) == 1


def test_receipts_repeat_and_arrive_out_of_order_but_status_only_moves_forward():
    message = queue()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    now = timezone.now()
    assert record_event(message=message, kind="delivered", occurred_at=now, provider_event_id="r1")
    assert not record_event(message=message, kind="delivered", occurred_at=now, provider_event_id="r1")
    assert record_event(message=message, kind="sent", occurred_at=now, provider_event_id="r0")
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert DeliveryEvent.objects.filter(message=message, kind="delivered").count() == 1


def test_a_hard_bounce_receipt_reports_the_dead_address(django_capture_on_commit_callbacks):
    message = queue()
    seen = []
    handler = lambda sender, **kw: seen.append(kw["reason"])  # noqa: E731
    signals.address_dead.connect(handler)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record_event(message=message, kind="bounced", occurred_at=timezone.now(), provider_event_id="b1")
    finally:
        signals.address_dead.disconnect(handler)
    assert seen == ["hard_bounce"]
    message.refresh_from_db()
    assert message.status == MessageStatus.BOUNCED


def test_the_tick_hands_out_due_retries_once_per_lease():
    message = queue()
    now = timezone.now()
    assert claim_due_messages(now=now) == [message.pk]
    assert claim_due_messages(now=now + timedelta(seconds=30)) == []
    assert claim_due_messages(now=now + timedelta(seconds=61)) == [message.pk]


def test_the_system_check_names_a_missing_option(settings):
    from django.core.management.base import SystemCheckError

    settings.CHANNEL_BACKENDS = {"sms": {"BACKEND": "tests.channel_doubles.JsonProvider"}}
    with pytest.raises(SystemCheckError, match=r"CHANNEL_BACKENDS\['sms'\] \(JsonProvider\) is missing the option TOKEN"):
        call_command("check")


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_message_at_once_send_it_once(channel_backends):
    message = queue()
    barrier = threading.Barrier(2)
    answers = []

    def work() -> None:
        barrier.wait()
        answers.append(deliver_message(message_id=message.pk))
        connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(a.split(" ")[0] for a in answers) == ["not", "sent"]
    assert len(locmem.outbox) == 1
    assert DeliveryAttempt.objects.count() == 1
