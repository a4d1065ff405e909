"""Starter templates: a ready campaign for each seed scenario, to copy and edit.

``STARTERS[scenario][channel]`` is a dict of ``CampaignVariant`` fields plus ``profile``
and ``promo_pool``. Every scenario has email (subject, preheader, HTML and text) and
SMS; order confirmation and shipped also have mobile and web push. The email bodies
live in ``starter_templates/`` as readable files; parts shared between them (the
layout, the order summary, the footers, the recommended products) are written into
each template when it is loaded, because a campaign template stands alone (the sandbox
refuses ``include``).

The marketing starters (welcome, reminder) carry what the law asks of them: the
unsubscribe link, the sender's name and postal address in HTML and text, and an
opt-out line in SMS.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import transaction

from channels.kinds import ChannelKind
from marketing.models import Campaign, CampaignVariant, PromoPool
from marketing.models.campaigns import Profile

if TYPE_CHECKING:
    from orders.models import Shop

TEMPLATES_DIR = Path(__file__).parent / "starter_templates"
REMINDER_POOL = "comeback"
SMS_OPT_OUT = "Reply STOP to opt out"

SCENARIOS: dict[str, str] = {
    "order_confirmation": "Order confirmation",
    "shipped": "Order shipped",
    "delivered": "Order delivered",
    "cancelled": "Order cancelled or refunded",
    "backordered": "Order backordered",
    "welcome": "Welcome",
    "reminder": "Come-back reminder",
}
_MARKETING = {"welcome", "reminder"}
_ORDER_SCENARIOS = {"order_confirmation", "shipped", "delivered", "cancelled", "backordered"}

_EMAIL_HEADERS: dict[str, tuple[str, str]] = {
    "order_confirmation": (
        "Your {{ shop.name }} order {{ order.number }} is confirmed",
        "Thanks{% if recipient.first_name %}, {{ recipient.first_name }}{% endif %}! "
        "Estimated delivery {{ order.delivery_estimate|date('medium') }}.",
    ),
    "shipped": (
        "Your order {{ order.number }} has shipped",
        "{% if order.tracking_number %}Tracking number {{ order.tracking_number }}. {% endif %}"
        "Arriving by {{ order.delivery_estimate|date('medium') }}.",
    ),
    "delivered": (
        "Your order {{ order.number }} has been delivered",
        "We hope you love it. Questions? Just reply.",
    ),
    "cancelled": (
        "{% if order.status in ('refunded', 'partially_refunded', 'returned') %}Your refund for order "
        "{{ order.number }}{% else %}Your order {{ order.number }} has been cancelled{% endif %}",
        "What happens to your payment, and how to reach us.",
    ),
    "backordered": (
        "Part of your order {{ order.number }} is on backorder",
        "We will ship the rest as soon as it arrives. Nothing to do on your side.",
    ),
    "welcome": (
        "Welcome to {{ shop.name }}{% if recipient.first_name %}, {{ recipient.first_name }}{% endif %}",
        "New arrivals, restocks and subscriber offers: here is where to start.",
    ),
    "reminder": (
        "{% if recipient.first_name %}{{ recipient.first_name }}, we{% else %}We{% endif %} have missed you: "
        "a code for your next order",
        "Your personal code is inside. Valid for 14 days.",
    ),
}

_SMS: dict[str, str] = {
    "order_confirmation": "{{ shop.name }}: thanks"
    "{% if recipient.first_name %}, {{ recipient.first_name }}{% endif %}! "
    "Order {{ order.number }} ({{ order.total_formatted }}) is confirmed. "
    "Estimated delivery {{ order.delivery_estimate|date('medium') }}.",
    "shipped": "{{ shop.name }}: order {{ order.number }} has shipped"
    "{% if order.carrier %} with {{ order.carrier }}{% endif %}."
    "{% if order.tracking_number %} Tracking {{ order.tracking_number }}{% endif %}"
    "{% if order.tracking_url %}: {{ order.tracking_url }}{% endif %}",
    "delivered": "{{ shop.name }}: order {{ order.number }} has been delivered. Enjoy!"
    "{% if shop.support_email %} Questions? {{ shop.support_email }}{% endif %}",
    "cancelled": "{{ shop.name }}: "
    "{% if order.status in ('refunded', 'partially_refunded', 'returned') %}we have refunded order {{ order.number }}. "
    "It can take 5-10 business days to show.{% else %}order {{ order.number }} was cancelled. If you were charged, "
    "{{ order.total_formatted }} goes back to your card.{% endif %}",
    "backordered": "{{ shop.name }}: some items in order {{ order.number }} are on backorder. We will ship them as "
    "soon as they arrive and send you tracking."
    "{% if shop.support_email %} Questions? {{ shop.support_email }}{% endif %}",
    "welcome": "{{ shop.name }}: welcome{% if recipient.first_name %}, {{ recipient.first_name }}{% endif %}! "
    "Subscriber offers and new arrivals are on their way.{% if shop.url %} {{ shop.url }}{% endif %} "
    + SMS_OPT_OUT,
    "reminder": "{{ shop.name }}: we have missed you! Use code "
    '{{ recipient.last_received_promo_code("' + REMINDER_POOL + '") }} on your next order, valid 14 days.'
    "{% if shop.url %} {{ shop.url }}{% endif %} " + SMS_OPT_OUT,
}

_PUSH: dict[str, dict[str, str]] = {
    "order_confirmation": {
        "title": "Order {{ order.number }} confirmed",
        "text_body": "Thanks for your order of {{ order.total_formatted }}. "
        "Estimated delivery {{ order.delivery_estimate|date('medium') }}.",
        "link": "{{ shop.url }}",
    },
    "shipped": {
        "title": "Order {{ order.number }} has shipped",
        "text_body": "On its way{% if order.carrier %} with {{ order.carrier }}{% endif %}."
        "{% if order.tracking_number %} Tracking {{ order.tracking_number }}.{% endif %}",
        "link": "{% if order.tracking_url %}{{ order.tracking_url }}{% else %}{{ shop.url }}{% endif %}",
    },
}


def _read(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def _compose(text: str, parts: dict[str, str]) -> str:
    for marker, value in parts.items():
        text = text.replace(f"[[{marker}]]", value.strip("\n"))
    return text


def _email(scenario: str) -> dict[str, Any]:
    kind = "marketing" if scenario in _MARKETING else "transactional"
    subject, preheader = _EMAIL_HEADERS[scenario]
    html_parts = {
        "order_summary": _read("_order_summary.html"),
        "picks": _read("_picks.html"),
        "pool": REMINDER_POOL,
    }
    text_parts = {"order_summary": _read("_order_summary.txt"), "picks": _read("_picks.txt"), "pool": REMINDER_POOL}
    content = _compose(_read(f"{scenario}.html"), html_parts)
    html = _compose(
        _read("_layout.html"),
        {"title": SCENARIOS[scenario], "content": content, "footer": _read(f"_footer_{kind}.html")},
    )
    text = _compose(_read(f"{scenario}.txt"), text_parts).rstrip("\n") + "\n\n" + _read(f"_footer_{kind}.txt")
    return {"subject": subject, "preheader": preheader, "html_body": html, "text_body": text}


def _build() -> dict[str, dict[str, dict[str, Any]]]:
    starters: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        profile = Profile.MARKETING if scenario in _MARKETING else Profile.TRANSACTIONAL
        common = {"profile": profile, "promo_pool": REMINDER_POOL if scenario == "reminder" else ""}
        channels = {ChannelKind.EMAIL: _email(scenario), ChannelKind.SMS: {"text_body": _SMS[scenario]}}
        if scenario in _PUSH:
            channels[ChannelKind.MOBILE_PUSH] = dict(_PUSH[scenario])
            channels[ChannelKind.WEB_PUSH] = dict(_PUSH[scenario])
        starters[scenario] = {str(channel): {**common, **fields} for channel, fields in channels.items()}
    return starters


STARTERS = _build()
VARIANT_FIELDS = ("subject", "preheader", "html_body", "text_body", "title", "link", "image_url")


def needs_order(scenario: str) -> bool:
    """Whether the scenario's templates use ``order`` (they render only with one)."""
    return scenario in _ORDER_SCENARIOS


def create_campaign_from_starter(
    *, scenario: str, channel: str, name: str | None = None, shop: Shop | None = None
) -> Campaign:
    """A draft campaign with one variant "A" holding the starter's content. With a
    ``shop``, its name (and for email its support address) become the sender. The
    reminder starter uses the promo pool ``comeback``, created empty if it does not
    exist: fill it before activating. Raises ``ValueError`` for an unknown starter."""
    try:
        content = STARTERS[scenario][channel]
    except KeyError:
        available = ", ".join(f"{s}/{c}" for s, channels in STARTERS.items() for c in channels)
        raise ValueError(f"There is no starter {scenario}/{channel}. Available: {available}.") from None
    is_email = channel == ChannelKind.EMAIL
    with transaction.atomic():
        pool = None
        if content["promo_pool"]:
            pool, _ = PromoPool.objects.get_or_create(
                slug=content["promo_pool"], defaults={"name": "Come-back offer", "pattern": "BACK-####-????"}
            )
        campaign = Campaign.objects.create(
            name=name or f"{SCENARIOS[scenario]} ({ChannelKind(channel).label})",
            channel=channel,
            profile=content["profile"],
            status=Campaign.Status.DRAFT,
            sender_name=shop.name if shop else "",
            sender_address=shop.support_email if shop and is_email else "",
            reply_to=shop.support_email if shop and is_email else "",
            promo_pool=pool,
            starter=f"{scenario}/{channel}",
        )
        CampaignVariant.objects.create(
            campaign=campaign, name="A", **{key: content[key] for key in VARIANT_FIELDS if key in content}
        )
    return campaign
