from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client

from channels.backends.email import unsubscribe_headers
from marketing.consent import consent_status, set_consent
from marketing.models import Campaign, ConsentEvent, ContactPoint
from marketing.unsubscribe import SALT, list_unsubscribe_headers, preferences_url, unsubscribe_url
from orders.models import CustomerIdentity
from tests.factories import CustomerFactory, ShopFactory

pytestmark = [pytest.mark.django_db]

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def customer():
    shop = ShopFactory(name="Acme Outdoors", slug="acme-outdoors", url="https://acme.example")
    person = CustomerFactory(email="ann@example.com", phone="+14155550100", phone_valid=True)
    CustomerIdentity.objects.create(customer=person, shop=shop, external_id="c-1")
    set_consent(customer=person, channel="email", status="subscribed", source="shop", now=NOW)
    return person


@pytest.fixture
def campaign():
    return Campaign.objects.create(name="Spring sale", channel="email", profile="marketing")


@pytest.fixture
def strict_client():
    return Client(enforce_csrf_checks=True)


def local(url: str) -> str:
    return urlsplit(url).path


def csrf_token_in(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_links_are_absolute_stable_and_carry_no_expiry(settings, customer, campaign):
    settings.HERALD_PUBLIC_URL = "https://herald.example"
    url = unsubscribe_url(customer=customer, channel="email", campaign=campaign)
    assert re.fullmatch(r"https://herald\.example/u/[^/]+/", url)
    assert unsubscribe_url(customer=customer, channel="email", campaign=campaign) == url
    assert unsubscribe_url(customer=customer, channel="sms", campaign=campaign) != url
    assert preferences_url(customer=customer, channel="email", campaign=campaign) == url + "preferences/"
    token = url.split("/")[-2]
    assert signing.Signer(salt=SALT).unsign_object(token) == [customer.pk, "email", campaign.pk]


def test_list_unsubscribe_data_becomes_one_click_headers_on_the_email(settings, customer, campaign):
    settings.HERALD_PUBLIC_URL = "https://herald.example"
    data = list_unsubscribe_headers(customer=customer, channel="email", campaign=campaign)
    url = unsubscribe_url(customer=customer, channel="email", campaign=campaign)
    assert data == {"list_unsubscribe_url": url}
    assert unsubscribe_headers(data) == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_one_click_post_unsubscribes_without_a_csrf_token_and_answers_200(strict_client, customer, campaign):
    url = local(unsubscribe_url(customer=customer, channel="email", campaign=campaign))
    response = strict_client.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert "Location" not in response
    assert consent_status(customer, "email") == "unsubscribed"
    event = ConsentEvent.objects.get(customer=customer, new_status="unsubscribed")
    assert event.source == "unsubscribe_link"
    assert event.detail == f"One-click unsubscribe from the mailbox (campaign {campaign.pk}: Spring sale)"


def test_one_click_as_multipart_form_also_works(strict_client, customer):
    url = local(unsubscribe_url(customer=customer, channel="email"))
    response = strict_client.post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert consent_status(customer, "email") == "unsubscribed"


def test_opening_the_link_shows_what_will_stop_and_unsubscribes_nobody(strict_client, customer):
    response = strict_client.get(local(unsubscribe_url(customer=customer, channel="email")))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme Outdoors" in html
    assert "Unsubscribe from marketing emails?" in html
    assert '<form method="post">' in html and csrf_token_in(html)
    assert consent_status(customer, "email") == "subscribed"
    assert not ConsentEvent.objects.filter(source="unsubscribe_link").exists()


def test_the_pages_button_unsubscribes_and_confirms_with_a_link_to_preferences(strict_client, customer):
    url = local(unsubscribe_url(customer=customer, channel="email"))
    token = csrf_token_in(strict_client.get(url).content.decode())
    response = strict_client.post(url, {"csrfmiddlewaretoken": token})
    assert response.status_code == 200
    html = response.content.decode()
    assert "You are unsubscribed" in html
    assert f'href="{url}preferences/"' in html
    assert consent_status(customer, "email") == "unsubscribed"
    assert ConsentEvent.objects.get(new_status="unsubscribed").detail == "Unsubscribe page"
    assert "You are already unsubscribed" in strict_client.get(url).content.decode()


def test_the_button_without_its_csrf_token_is_refused(strict_client, customer):
    response = strict_client.post(local(unsubscribe_url(customer=customer, channel="email")), {"confirm": "1"})
    assert response.status_code == 403
    assert consent_status(customer, "email") == "subscribed"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        signing.Signer(salt="something.else").sign_object([1, "email", None]),
        signing.Signer(salt=SALT).sign_object([1, "fax", None]),
        signing.Signer(salt=SALT).sign_object({"customer": 1}),
    ],
    ids=["garbage", "other-salt", "unknown-channel", "wrong-shape"],
)
def test_a_bad_token_gets_a_400_page_in_plain_words(client, token):
    for url in (f"/u/{token}/", f"/u/{token}/preferences/"):
        response = client.get(url)
        assert response.status_code == 400
        assert "This link is damaged or incomplete" in response.content.decode()
    assert client.post(f"/u/{token}/", {"List-Unsubscribe": "One-Click"}).status_code == 400


def test_a_tampered_token_changes_nothing(client, customer):
    url = local(unsubscribe_url(customer=customer, channel="email"))
    payload, _, signature = url.split("/")[2].rpartition(":")
    other = CustomerFactory()
    forged = signing.b64_encode(f'[{other.pk},"email",null]'.encode()).decode()
    flipped = signature[:-1] + ("B" if signature.endswith("A") else "A")
    for token in (f"{payload}:{flipped}", f"{forged}:{signature}"):
        response = client.post(f"/u/{token}/", {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400
    assert consent_status(customer, "email") == "subscribed"
    assert consent_status(other, "email") == "never_asked"


def test_a_link_for_a_forgotten_customer_says_there_is_nothing_to_do(client, customer):
    url = local(unsubscribe_url(customer=customer, channel="email"))
    customer.delete()
    response = client.get(url)
    assert response.status_code == 404
    assert "nothing to unsubscribe from" in response.content.decode()


def test_preference_page_round_trip(strict_client, customer, campaign):
    ContactPoint.objects.create(
        customer=customer, channel="mobile_push", address="fcm-1", created_at=NOW, updated_at=NOW
    )
    url = local(preferences_url(customer=customer, channel="email", campaign=campaign))
    html = strict_client.get(url).content.decode()
    assert [m for m in re.findall(r'<h2 id="channel-([a-z_]+)">', html)] == ["email", "sms", "whatsapp", "mobile_push"]
    assert "a•••@example.com" in html and "••• 100" in html
    assert "ann@example.com" not in html
    assert 'value="unsubscribed"' in html and 'value="subscribed"' in html

    choice = {"csrfmiddlewaretoken": csrf_token_in(html), "channel": "sms", "status": "subscribed"}
    response = strict_client.post(url, choice)
    assert response.status_code == 302
    assert response["Location"] == f"{url}?saved=sms"
    page = strict_client.get(response["Location"]).content.decode()
    assert "Saved: your SMS choice is updated." in page
    assert consent_status(customer, "sms") == "subscribed"

    strict_client.post(url, {"csrfmiddlewaretoken": csrf_token_in(page), "channel": "email", "status": "unsubscribed"})
    assert consent_status(customer, "email") == "unsubscribed"
    events = ConsentEvent.objects.filter(source="preference_page").order_by("id")
    assert [(e.channel, e.new_status, e.detail) for e in events] == [
        ("sms", "subscribed", f"Preference page (campaign {campaign.pk}: Spring sale)"),
        ("email", "unsubscribed", f"Preference page (campaign {campaign.pk}: Spring sale)"),
    ]


def test_preference_page_offers_only_channels_the_brand_sends_in(settings, client, customer):
    settings.CHANNEL_BACKENDS = {"email": {"BACKEND": "channels.backends.locmem.LocmemBackend"}}
    html = client.get(local(preferences_url(customer=customer, channel="email"))).content.decode()
    assert re.findall(r'<h2 id="channel-([a-z_]+)">', html) == ["email"]
    url = local(preferences_url(customer=customer, channel="email"))
    response = client.post(url, {"channel": "sms", "status": "subscribed"})
    assert response.status_code == 400
    assert consent_status(customer, "sms") == "never_asked"
