from __future__ import annotations

import pytest

from marketing.compliance import activate_campaign, check_campaign
from marketing.models import Campaign, CampaignVariant, PromoPool

pytestmark = pytest.mark.django_db

HTML = (
    "<p>Hello {{ recipient.first_name }}, spring is here.</p>"
    '<p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</p>'
)
TEXT = "Hello {{ recipient.first_name }}.\n\nUnsubscribe: {{ message.unsubscribe_url }}\n{{ shop['postal_address'] }}"


def email_campaign(**fields) -> Campaign:
    values = {
        "name": "Spring sale",
        "channel": "email",
        "profile": "marketing",
        "sender_name": "Acme Outdoors",
        "sender_address": "news@acme.example",
    }
    return Campaign.objects.create(**(values | fields))


def variant(campaign: Campaign, name: str = "A", **fields) -> CampaignVariant:
    values = {"subject": "Spring sale", "html_body": HTML, "text_body": TEXT}
    return CampaignVariant.objects.create(campaign=campaign, name=name, **(values | fields))


def codes(problems) -> list[tuple[str, str]]:
    return [(p.level, p.code) for p in problems]


def test_a_compliant_marketing_email_activates():
    campaign = email_campaign()
    variant(campaign, "A")
    variant(campaign, "B")
    assert check_campaign(campaign) == []
    assert activate_campaign(campaign=campaign) == []
    campaign.refresh_from_db()
    assert campaign.status == "active"


def test_each_missing_element_is_named_with_its_variant_and_body():
    campaign = email_campaign(sender_name="", sender_address="")
    variant(campaign, "A")
    variant(
        campaign,
        "B",
        text_body="Hello.\n{{ shop.postal_address }}",
        html_body="<p>Hi {{ message.unsubscribe_url }}</p>",
    )
    messages = [p.message for p in check_campaign(campaign)]
    assert messages == [
        "The campaign has no sender name (the From name people see).",
        "The campaign has no sender address (the From email address).",
        "Variant B: the HTML body has no postal address ({{ shop.postal_address }}).",
        "Variant B: the text body has no unsubscribe link ({{ message.unsubscribe_url }}).",
    ]


def test_refused_activation_returns_the_errors_and_leaves_the_status():
    campaign = email_campaign()
    variant(campaign, "A", text_body="Hello, no footer here.")
    problems = activate_campaign(campaign=campaign, accept_warnings=True)
    assert codes(problems) == [("error", "missing_unsubscribe"), ("error", "missing_postal_address")]
    assert problems[0].message == "Variant A: the text body has no unsubscribe link ({{ message.unsubscribe_url }})."
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_a_postal_address_typed_as_text_is_not_accepted():
    campaign = email_campaign()
    variant(campaign, text_body="Unsubscribe: {{ message.unsubscribe_url }}\nAcme, 1 Main St, Springfield")
    assert [p.message for p in check_campaign(campaign)] == [
        "Variant A: the text body has no postal address ({{ shop.postal_address }})."
    ]


def test_a_text_only_email_needs_the_footer_only_in_its_text_and_an_empty_text_is_an_error():
    campaign = email_campaign()
    variant(campaign, "A", html_body="")
    variant(campaign, "B", text_body="   ")
    assert codes(check_campaign(campaign)) == [
        ("error", "missing_text_body"),
    ]
    assert check_campaign(campaign)[0].message.startswith("Variant B: the text body is empty.")


def test_a_campaign_without_variants_cannot_activate():
    campaign = email_campaign()
    assert [p.message for p in activate_campaign(campaign=campaign)] == [
        "The campaign has no variants: add one with the message's content."
    ]


def test_a_template_that_cannot_be_parsed_is_an_error_with_its_line():
    campaign = email_campaign()
    variant(campaign, html_body=HTML + "\n{% if x %}unclosed")
    problems = check_campaign(campaign)
    assert codes(problems)[0] == ("error", "template_syntax")
    assert problems[0].message.startswith("Variant A: line 2 of the HTML body: the template cannot be read")


def test_a_marketing_sms_needs_a_stop_line_in_every_variant():
    campaign = Campaign.objects.create(name="Flash sale", channel="sms", profile="marketing")
    CampaignVariant.objects.create(campaign=campaign, name="A", text_body="20% off today! Reply STOP to opt out")
    CampaignVariant.objects.create(campaign=campaign, name="B", text_body="20% off today, {{ recipient.first_name }}!")
    CampaignVariant.objects.create(campaign=campaign, name="C", text_body="Unstoppable deals at {{ shop.url }}")
    assert [p.message for p in check_campaign(campaign)] == [
        'Variant B: the message has no opt-out line. Add one such as "Reply STOP to opt out".',
        'Variant C: the message has no opt-out line. Add one such as "Reply STOP to opt out".',
    ]
    CampaignVariant.objects.filter(name__in=["B", "C"]).update(text_body="Deals! Text stop to unsubscribe.")
    assert activate_campaign(campaign=campaign) == []


def test_a_whatsapp_approved_template_is_a_warning_to_accept_unless_its_text_has_the_line():
    campaign = Campaign.objects.create(name="WA promo", channel="whatsapp", profile="marketing")
    CampaignVariant.objects.create(
        campaign=campaign,
        name="A",
        template_name="spring_sale",
        template_language="en",
        template_parameters=["recipient.first_name"],
    )
    assert codes(activate_campaign(campaign=campaign)) == [("warning", "opt_out_unverified")]
    assert activate_campaign(campaign=campaign, accept_warnings=True) == []


def test_marketing_push_has_no_template_requirement():
    campaign = Campaign.objects.create(name="Push", channel="mobile_push", profile="marketing")
    CampaignVariant.objects.create(campaign=campaign, name="A", title="New in", text_body="See what's new")
    assert check_campaign(campaign) == []


def test_transactional_promo_warning_is_refused_until_accepted_and_the_acceptance_is_kept():
    campaign = Campaign.objects.create(name="Order confirmation", channel="email", profile="transactional")
    CampaignVariant.objects.create(
        campaign=campaign,
        name="A",
        html_body="<p>Thanks for order {{ order.number }}.</p>"
        "<p>Your coupon: {{ recipient.last_received_promo_code('thanks') }}</p>",
        text_body="Thanks for order {{ order.number }}.",
    )
    problems = activate_campaign(campaign=campaign)
    assert codes(problems) == [("warning", "transactional_promo")]
    assert problems[0].message == (
        "Variant A: this transactional message carries a promotion (the HTML body shows a promo code; "
        'the HTML body says "coupon"). Promotions need marketing consent: make it a marketing campaign, '
        "or accept this warning."
    )
    campaign.refresh_from_db()
    assert (campaign.status, campaign.promo_warning_accepted) == ("draft", False)

    assert activate_campaign(campaign=campaign, accept_warnings=True) == []
    campaign.refresh_from_db()
    assert (campaign.status, campaign.promo_warning_accepted) == ("active", True)
    campaign.status = "draft"
    campaign.save()
    assert activate_campaign(campaign=campaign) == []


@pytest.mark.parametrize(
    "text",
    ["Take 15% off your next order", "Use discount code SPRING", "Your promo code: {{ code }}", "Here is a coupon"],
)
def test_promo_words_in_a_transactional_template_are_flagged(text):
    campaign = Campaign.objects.create(name="Shipped", channel="sms", profile="transactional")
    body = "Order {{ order.number }} shipped. " + text
    CampaignVariant.objects.create(campaign=campaign, name="A", text_body=body)
    assert codes(check_campaign(campaign)) == [("warning", "transactional_promo")]


def test_a_transactional_campaign_with_a_promo_pool_is_flagged_and_a_plain_one_is_not():
    campaign = Campaign.objects.create(name="Delivered", channel="sms", profile="transactional")
    CampaignVariant.objects.create(campaign=campaign, name="A", text_body="Order {{ order.number }} was delivered.")
    assert check_campaign(campaign) == []
    campaign.promo_pool = PromoPool.objects.create(name="Thank-you codes", slug="thanks")
    campaign.save()
    problems = check_campaign(campaign)
    assert codes(problems) == [("warning", "transactional_promo")]
    assert 'from the pool "Thank-you codes"' in problems[0].message
