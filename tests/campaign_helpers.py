"""Campaigns for tests."""

from __future__ import annotations

from typing import Any

from marketing.compliance import activate_campaign
from marketing.consent import set_consent
from marketing.models import Campaign, CampaignVariant

MARKETING_EMAIL = {
    "subject": "Hello {{ recipient.first_name }}",
    "html_body": (
        "<p>Hi {{ recipient.first_name }}</p><p><a href=\"{{ message.unsubscribe_url }}\">Unsubscribe</a></p>"
        "<p>{{ shop.name }}, {{ shop.postal_address }}</p>"
    ),
    "text_body": "Hi {{ recipient.first_name }}\nUnsubscribe: {{ message.unsubscribe_url }}\n{{ shop.name }}, {{ shop.postal_address }}",
}
TRANSACTIONAL_EMAIL = {
    "subject": "Order {{ order.number }} confirmed",
    "text_body": "Thanks {{ recipient.first_name }}! Total {{ order.total_formatted }}.",
}
MARKETING_SMS = {"text_body": "{{ shop.name }}: 20% off today. Reply STOP to opt out"}


def make_campaign(
    *, channel: str = "email", profile: str = "transactional", content: dict[str, Any] | None = None,
    activate: bool = True, **fields: Any,
) -> Campaign:  # fmt: skip
    if content is None:
        content = {
            ("email", "marketing"): MARKETING_EMAIL,
            ("email", "transactional"): TRANSACTIONAL_EMAIL,
            ("sms", "marketing"): MARKETING_SMS,
        }.get((channel, profile), {"text_body": "Hello {{ recipient.first_name }}. Reply STOP to opt out"})
    defaults = {"sender_name": "Acme", "sender_address": "hello@acme.example"} if channel == "email" else {}
    campaign = Campaign.objects.create(
        name=fields.pop("name", f"{profile} {channel}"), channel=channel, profile=profile, **{**defaults, **fields}
    )
    CampaignVariant.objects.create(campaign=campaign, name="A", **content)
    if activate:
        problems = activate_campaign(campaign=campaign, accept_warnings=True)
        assert not [p for p in problems if p.level == "error"], problems
        campaign.refresh_from_db()
    return campaign


def subscribe(customer: Any, channel: str, now: Any) -> None:
    set_consent(customer=customer, channel=channel, status="subscribed", source="staff", now=now)
