"""Every starter template renders for a real order and says what it must."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

from channels.kinds import ChannelKind
from marketing.context import build_context
from marketing.models import Campaign, PromoPool
from marketing.rendering import RenderedContent, render_variant, template_variables
from marketing.starters import STARTERS, create_campaign_from_starter, needs_order
from orders.models import Order, OrderLine
from orders.statuses import OrderStatus
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

NOW = datetime(2026, 11, 9, 15, 0, tzinfo=UTC)
UNSUBSCRIBE = "https://herald.example/u/6Jq1-signed-token/"
PROMO_CODE = "BACK-4821-KQZT"
STARTER_KEYS = [(scenario, channel) for scenario, channels in STARTERS.items() for channel in channels]
MARKETING = {"welcome", "reminder"}


@pytest.fixture
def order(db: None) -> Order:
    shop = ShopFactory(
        name="Acme Outfitters",
        url="https://acme.example",
        support_email="help@acme.example",
        postal_address="1 Main Street\nSpringfield, IL 62701",
    )
    customer = CustomerFactory(first_name="Ada", last_name="Lovelace", locale="en_US", timezone="America/Chicago")
    order = OrderFactory(
        shop=shop,
        customer=customer,
        number="#1042",
        status=OrderStatus.SHIPPED,
        currency="USD",
        subtotal=Decimal("176.00"),
        discount_total=Decimal("10.00"),
        shipping_total=Decimal("9.95"),
        tax_total=Decimal("37.99"),
        total=Decimal("213.94"),
        tracking_number="1Z999AA10123456784",
        carrier="UPS",
        tracking_url="https://www.ups.com/track?tracknum=1Z999AA10123456784",
        shipping_address={"name": "Ada Lovelace", "address1": "500 W Madison St", "city": "Chicago",
                          "province": "IL", "zip": "60661", "country_code": "US"},
    )
    OrderLine.objects.create(order=order, position=1, name="Waxed canvas tote", sku="BAG-003", quantity=2,
                             price=Decimal("64.00"), total=Decimal("128.00"),
                             image_url="https://cdn.acme.example/tote.jpg", url="https://acme.example/p/tote")
    OrderLine.objects.create(order=order, position=2, name="Organic cotton tee", sku="TEE-001", quantity=2,
                             price=Decimal("24.00"), total=Decimal("48.00"))
    return order


def recommend(algorithm: str, limit: int) -> list[dict[str, Any]]:
    products = [
        {"name": "Enamel camp mug", "url": "https://acme.example/p/mug", "image": "https://cdn.acme.example/mug.jpg",
         "price": Decimal("18.50")},
        {"name": "Merino hiking socks", "url": "https://acme.example/p/socks", "image": "", "price": Decimal("16.00")},
        {"name": "Five-panel cap", "url": "https://acme.example/p/cap", "image": "https://cdn.acme.example/cap.jpg",
         "price": Decimal("29.00")},
    ]
    return products[:limit]


def render_starter(order: Order, scenario: str, channel: str, *, with_order: bool = True) -> RenderedContent:
    campaign = create_campaign_from_starter(scenario=scenario, channel=channel, shop=order.shop)
    context = build_context(
        customer=order.customer,
        shop=order.shop,
        order=order if with_order else None,
        campaign=campaign,
        now=NOW,
        promo_codes={"comeback": PROMO_CODE},
        recommend=recommend,
        unsubscribe_url=UNSUBSCRIBE,
        view_in_browser_url="https://herald.example/v/6Jq1/",
    )
    return render_variant(campaign.variants.get(), context)


def bodies(rendered: RenderedContent) -> list[str]:
    """What a customer reads in this channel: the HTML and text of an email, the text
    of an SMS, the title and text of a push notification."""
    if rendered.title:
        return [f"{rendered.title}\n{rendered.text}"]
    return [body for body in (rendered.html, rendered.text) if body]


@pytest.mark.parametrize(("scenario", "channel"), STARTER_KEYS)
def test_every_starter_renders_for_a_real_order(order: Order, scenario: str, channel: str) -> None:
    rendered = render_starter(order, scenario, channel)
    everything = " ".join([rendered.subject, rendered.link, *bodies(rendered)])
    assert bodies(rendered), "the starter renders no body"
    for body in bodies(rendered):
        if needs_order(scenario):
            assert "#1042" in body
        if scenario == "shipped":
            assert "1Z999AA10123456784" in body
        if scenario == "reminder":
            assert PROMO_CODE in body
    if channel == ChannelKind.EMAIL:
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.html.startswith("<!DOCTYPE html>") and rendered.text
        if needs_order(scenario):
            for body in bodies(rendered):
                assert "$213.94" in body and "Waxed canvas tote" in body
    if channel in {ChannelKind.MOBILE_PUSH, ChannelKind.WEB_PUSH}:
        assert rendered.title and rendered.link.startswith("https://")
    assert "{{" not in everything and "[[" not in everything


@pytest.mark.parametrize(("scenario", "channel"), [key for key in STARTER_KEYS if key[0] in MARKETING])
def test_marketing_starters_carry_unsubscribe_sender_and_postal_address(
    order: Order, scenario: str, channel: str
) -> None:
    rendered = render_starter(order, scenario, channel)
    for body in bodies(rendered):
        assert "Acme Outfitters" in body
        if channel == ChannelKind.SMS:
            assert body.endswith("Reply STOP to opt out")
        else:
            assert UNSUBSCRIBE in body
            assert "1 Main Street" in body and "Springfield, IL 62701" in body
    content = STARTERS[scenario][channel]
    for source in (content.get("html_body", ""), content.get("text_body", "")):
        if source and channel == ChannelKind.EMAIL:
            assert {"message.unsubscribe_url", "shop.name", "shop.postal_address"} <= template_variables(source)


def test_order_confirmation_shows_lines_totals_and_delivery_estimate(order: Order) -> None:
    rendered = render_starter(order, "order_confirmation", ChannelKind.EMAIL)
    for expected in ("2 x Waxed canvas tote (BAG-003): $128.00", "Subtotal: $176.00", "Discount: -$10.00",
                     "Shipping: $9.95", "Tax: $37.99", "Total: $213.94",
                     "Estimated delivery: Friday, November 6, 2026", "500 W Madison St\nChicago, IL 60661"):
        assert expected in rendered.text
    assert "Thank you for your order, Ada!" in rendered.html
    assert rendered.preheader == "Thanks, Ada! Estimated delivery Nov 6, 2026."


def test_shipped_email_links_the_tracking_page(order: Order) -> None:
    rendered = render_starter(order, "shipped", ChannelKind.EMAIL)
    assert 'href="https://www.ups.com/track?tracknum=1Z999AA10123456784"' in rendered.html
    assert "with UPS" in rendered.text
    push = render_starter(order, "shipped", ChannelKind.MOBILE_PUSH)
    assert push.link == "https://www.ups.com/track?tracknum=1Z999AA10123456784"


def test_cancelled_starter_speaks_of_a_refund_when_the_order_was_refunded(order: Order) -> None:
    order.status = OrderStatus.CANCELLED
    order.save()
    cancelled = render_starter(order, "cancelled", ChannelKind.SMS)
    assert "order #1042 was cancelled" in cancelled.text and "$213.94" in cancelled.text
    order.status = OrderStatus.REFUNDED
    order.save()
    refunded = render_starter(order, "cancelled", ChannelKind.EMAIL)
    assert refunded.subject == "Your refund for order #1042"
    assert "Your refund is on its way" in refunded.text


def test_welcome_shows_recommendations_and_renders_without_an_order(order: Order) -> None:
    rendered = render_starter(order, "welcome", ChannelKind.EMAIL, with_order=False)
    assert "Enamel camp mug" in rendered.html and "$18.50" in rendered.html
    assert "- Five-panel cap, $29.00: https://acme.example/p/cap" in rendered.text
    reminder = render_starter(order, "reminder", ChannelKind.EMAIL, with_order=False)
    assert PROMO_CODE in reminder.text and "Valid until November 23, 2026" in reminder.text


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "html":
            self.html_lang = dict(attrs).get("lang")


@pytest.mark.parametrize("scenario", list(STARTERS))
def test_starter_emails_give_every_image_alt_text_and_a_language(order: Order, scenario: str) -> None:
    parser = _Images()
    parser.feed(render_starter(order, scenario, ChannelKind.EMAIL).html)
    assert parser.html_lang == "en-US"
    assert all(image.get("alt") for image in parser.images)
    if scenario in {"order_confirmation", "welcome"}:
        assert parser.images, "the starter should show product images"


def test_campaign_from_starter_is_a_draft_with_one_variant(order: Order) -> None:
    campaign = create_campaign_from_starter(scenario="reminder", channel="email", shop=order.shop)
    assert campaign.status == Campaign.Status.DRAFT and campaign.profile == "marketing"
    assert campaign.name == "Come-back reminder (Email)" and campaign.starter == "reminder/email"
    assert (campaign.sender_name, campaign.sender_address) == ("Acme Outfitters", "help@acme.example")
    assert campaign.promo_pool == PromoPool.objects.get(slug="comeback")
    assert list(campaign.variants.values_list("name", flat=True)) == ["A"]
    sms = create_campaign_from_starter(scenario="order_confirmation", channel="sms", name="Order SMS")
    assert (sms.name, sms.profile, sms.promo_pool, sms.sender_address) == ("Order SMS", "transactional", None, "")


def test_unknown_starter_lists_the_ones_there_are(db: None) -> None:
    with pytest.raises(ValueError, match="There is no starter delivered/mobile_push. Available: .*shipped/mobile_push"):
        create_campaign_from_starter(scenario="delivered", channel="mobile_push")
