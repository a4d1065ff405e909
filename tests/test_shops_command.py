from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import Shop
from tests.factories import ShopFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_url(settings: object) -> None:
    settings.HERALD_PUBLIC_URL = "https://herald.example.com"  # type: ignore[attr-defined]


def shops(*args: str) -> str:
    out = StringIO()
    call_command("shops", *args, stdout=out)
    return out.getvalue()


def test_add_creates_the_shop_and_prints_the_webhook_url_to_paste():
    output = shops(
        *["add", "woocommerce", "bolt-coffee", "--secret", "wc-secret", "--name", "Bolt Coffee"],
        *["--currency", "eur", "--timezone", "Europe/Berlin", "--country", "de"],
        *["--api-url", "https://bolt.example.com", "--api-key", "ck_123", "--api-secret", "cs_456"],
    )
    shop = Shop.objects.get(slug="bolt-coffee")
    assert (shop.name, shop.platform, shop.webhook_secret) == ("Bolt Coffee", "woocommerce", "wc-secret")
    assert (shop.currency, shop.timezone, shop.country) == ("EUR", "Europe/Berlin", "DE")
    assert (shop.api_url, shop.api_key, shop.api_secret) == ("https://bolt.example.com", "ck_123", "cs_456")
    assert "Webhook URL: https://herald.example.com/webhooks/woocommerce/bolt-coffee/\n" in output
    assert "WooCommerce > Settings > Advanced > Webhooks" in output
    assert "wc-secret" not in output  # a secret the owner typed is not echoed into logs


def test_add_without_a_secret_generates_one_and_prints_it():
    output = shops("add", "volusion", "fjord-knits")
    shop = Shop.objects.get(slug="fjord-knits")
    assert len(shop.webhook_secret) >= 40
    assert f"Webhook secret (generated): {shop.webhook_secret}\n" in output
    assert "Webhook URL: https://herald.example.com/webhooks/generic/fjord-knits/\n" in output
    assert (shop.name, shop.currency, shop.timezone) == ("Fjord Knits", "USD", "UTC")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "shopfy", "acme-eu"], "Unknown platform 'shopfy'. Choose one of: shopify, woocommerce, bigcommerce"),
        (["add", "shopify", "acme-eu", "--timezone", "Berlin"], "'Berlin' is not an IANA time zone"),
        (["add", "shopify", "acme-eu", "--currency", "EURO"], "Unknown currency 'EURO'"),
        (["add", "shopify", "acme eu"], "slug: Enter a valid"),
        (["add", "shopify", "acme-eu", "--api-url", "not a url"], "api_url: Enter a valid URL."),
    ],
)
def test_add_refuses_bad_input_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        shops(*args)
    assert not Shop.objects.exists()


def test_add_refuses_a_slug_that_is_taken():
    ShopFactory(name="Acme", slug="acme", platform="shopify")
    with pytest.raises(CommandError, match="The slug 'acme' is taken by Acme \\(Shopify\\); choose another one."):
        shops("add", "woocommerce", "acme", "--secret", "s")
    assert Shop.objects.get().platform == "shopify"


def test_list_prints_a_table_of_shops_with_their_urls_and_rejections():
    ShopFactory(slug="acme", platform="shopify", rejected_count=4)
    ShopFactory(slug="cobalt-gear", platform="bigcommerce", is_active=False)
    lines = shops("list").splitlines()
    assert lines[0].split() == ["SLUG", "PLATFORM", "WEBHOOK", "URL", "ACTIVE", "REJECTED"]
    assert lines[1].split() == ["acme", "shopify", "https://herald.example.com/webhooks/shopify/acme/", "yes", "4"]
    cobalt_url = "https://herald.example.com/webhooks/bigcommerce/cobalt-gear/"
    assert lines[2].split() == ["cobalt-gear", "bigcommerce", cobalt_url, "no", "0"]
    assert lines[1].index("https://") == lines[2].index("https://") == lines[0].index("WEBHOOK URL")


def test_list_without_shops_says_how_to_add_one():
    assert "manage.py shops add <platform> <slug>" in shops("list")
