"""Our tags on customers: normalised names, idempotent, and out of the shop's reach."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine

from marketing.models import CustomerTag, Tag
from marketing.tags import customer_tags, has_tag, normalise_tag, tag_customer, untag_customer
from orders.models import Customer
from tests.conftest import herald_signature, load_fixture, run_pending
from tests.factories import CustomerFactory, ShopFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("VIP", "vip"),
        ("  VIP Customer ", "vip-customer"),
        ("vip\tcustomer  2026", "vip-customer-2026"),
        ("already-normal", "already-normal"),
    ],
)
def test_tag_names_are_stripped_lowercased_and_spaces_become_dashes(given, stored):
    assert normalise_tag(given) == stored


def test_an_empty_or_overlong_tag_name_is_refused_in_words():
    with pytest.raises(ValueError, match="A tag needs a name"):
        normalise_tag("   ")
    with pytest.raises(ValueError, match="is 101 characters long; tags may be at most 100"):
        normalise_tag("x" * 101)
    assert normalise_tag("x" * 100) == "x" * 100


def test_tagging_twice_is_one_tag_with_its_first_source():
    customer = CustomerFactory()
    assert tag_customer(customer=customer, tag_name="VIP Customer", source="staff:ada", now=NOW) is True
    assert tag_customer(customer=customer, tag_name="vip customer", source="flow:7", now=NOW) is False
    assert tag_customer(customer=customer, tag_name="vip-customer", source="flow:7", now=NOW) is False

    tagged = CustomerTag.objects.get()
    assert (tagged.tag.name, tagged.source, tagged.created_at) == ("vip-customer", "staff:ada", NOW)
    assert Tag.objects.count() == 1


def test_customer_tags_are_listed_alphabetically_and_only_theirs():
    customer, other = CustomerFactory(), CustomerFactory()
    for name in ("Winback", "VIP", "Newsletter reader"):
        tag_customer(customer=customer, tag_name=name, source="staff:ada", now=NOW)
    tag_customer(customer=other, tag_name="Wholesale", source="staff:ada", now=NOW)
    assert customer_tags(customer) == ["newsletter-reader", "vip", "winback"]
    assert customer_tags(other) == ["wholesale"]
    assert has_tag(customer, " VIP ") and not has_tag(customer, "wholesale")


def test_untagging_is_idempotent_and_keeps_the_tag_for_others():
    customer, other = CustomerFactory(), CustomerFactory()
    tag_customer(customer=customer, tag_name="vip", source="staff:ada", now=NOW)
    tag_customer(customer=other, tag_name="vip", source="staff:ada", now=NOW)

    assert untag_customer(customer=customer, tag_name="VIP") is True
    assert untag_customer(customer=customer, tag_name="VIP") is False
    assert customer_tags(customer) == []
    assert customer_tags(other) == ["vip"]
    assert Tag.objects.filter(name="vip").exists()


def test_the_shops_updates_never_touch_our_tags(client):
    shop = ShopFactory(slug="corner-store", platform="custom", webhook_secret="hrld_test_secret")

    def deliver(name: str) -> None:
        body = json.dumps(load_fixture("generic", name)).encode()
        response = client.generic(
            "POST", shop.webhook_path(), body, content_type="application/json",
            HTTP_HERALD_SIGNATURE=herald_signature(shop.webhook_secret, body),
        )
        assert response.status_code == 200
        run_pending()

    with time_machine.travel(NOW, tick=False):
        deliver("customer_created.json")
        customer = Customer.objects.get()
        tag_customer(customer=customer, tag_name="VIP", source="staff:ada", now=NOW)
        deliver("customer_updated.json")

    customer.refresh_from_db()
    assert customer.accepts_email_marketing is True  # the update was applied...
    assert customer_tags(customer) == ["vip"]  # ...and our tag is still there
