"""Recipes: the three seed flows, ready to start a new flow from (the admin offers them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from flows.actions import activate_flow, draft_version
from flows.models import (
    AlertTeamStep,
    ContactSubscribedCondition,
    DelayWait,
    EndStep,
    Flow,
    OrderStatusCondition,
    PlacedOrderCondition,
    SendCampaignStep,
    StatusRouterStep,
)
from marketing.models import Campaign, CampaignVariant
from marketing.models.campaigns import Profile
from marketing.starters import create_campaign_from_starter
from orders.models import Shop

ONE_WEEK = 7 * 24 * 60


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build: Callable[[Flow, Shop | None], list[tuple[type, dict]]]  # type: ignore[type-arg]
    flow_fields: dict  # type: ignore[type-arg]


def _campaign(scenario: str, shop: Shop | None, channel: str = "email") -> Campaign:
    return create_campaign_from_starter(scenario=scenario, channel=channel, shop=shop)


def _confirmation(flow: Flow, shop: Shop | None) -> list[tuple[type, dict]]:  # type: ignore[type-arg]
    return [
        (OrderStatusCondition, {"key": "confirmed-or-paid", "statuses": ["confirmed", "paid"], "as_of": "trigger",
                                "label": "Order status is Confirmed or Paid (when placed)"}),
        (SendCampaignStep, {"key": "send-confirmation", "campaign": _campaign("order_confirmation", shop),
                            "label": "Send the order confirmation"}),
    ]  # fmt: skip


def _welcome(flow: Flow, shop: Shop | None) -> list[tuple[type, dict]]:  # type: ignore[type-arg]
    return [
        (ContactSubscribedCondition, {"key": "subscribed", "channel": "email",
                                      "label": "Email address valid and subscribed"}),
        (SendCampaignStep, {"key": "send-welcome", "campaign": _campaign("welcome", shop),
                            "label": "Send the welcome email"}),
        (DelayWait, {"key": "wait-a-week", "minutes": ONE_WEEK, "label": "Wait one week"}),
        (PlacedOrderCondition, {"key": "no-order-yet", "negate": True, "window": "since_run_started",
                                "label": "Has NOT placed an order during the wait"}),
        (SendCampaignStep, {"key": "send-reminder", "campaign": _campaign("reminder", shop),
                            "label": "Send the reminder with a promo code"}),
    ]  # fmt: skip


def _backordered_campaign(shop: Shop | None) -> Campaign:
    campaign = Campaign.objects.create(
        name="Order backordered (Email)",
        channel="email",
        profile=Profile.TRANSACTIONAL,
        sender_name=shop.name if shop else "",
        sender_address=shop.support_email if shop else "",
        starter="backordered/email",
    )
    CampaignVariant.objects.create(
        campaign=campaign,
        name="A",
        subject="Part of your order {{ order.number }} is on backorder",
        text_body=(
            "Hello {{ recipient.first_name or 'there' }},\n\n"
            "Some items in order {{ order.number }} are on backorder. We will ship them as soon as they arrive "
            "and write again with tracking.\n\n{% for line in order.lines %}- {{ line.quantity }} x {{ line.name }}\n"
            "{% endfor %}\nQuestions? {{ shop.support_email }}\n{{ shop.name }}"
        ),
    )
    return campaign


def _status_updates(flow: Flow, shop: Shop | None) -> list[tuple[type, dict]]:  # type: ignore[type-arg]
    team = (shop.support_email if shop and shop.support_email else "team@example.com")
    return [
        (StatusRouterStep, {"key": "route", "label": "Route by the new status", "routes": {
            "shipped": "send-shipped", "out_for_delivery": "send-shipped", "delivered": "send-delivered",
            "cancelled": "send-cancelled", "refunded": "send-cancelled", "backordered": "send-backordered"}}),
        (SendCampaignStep, {"key": "send-shipped", "campaign": _campaign("shipped", shop),
                            "label": "Send the shipping update with tracking"}),
        (EndStep, {"key": "end-shipped"}),
        (SendCampaignStep, {"key": "send-delivered", "campaign": _campaign("delivered", shop),
                            "label": "Send the delivered note"}),
        (EndStep, {"key": "end-delivered"}),
        (SendCampaignStep, {"key": "send-cancelled", "campaign": _campaign("cancelled", shop),
                            "label": "Send the cancellation / refund note"}),
        (AlertTeamStep, {"key": "alert-team", "alias": "email", "address": team,
                         "subject": "Order {{ order.number }} was {{ order.status }}",
                         "text": "Order {{ order.number }} ({{ order.total_formatted }}) for "
                                 "{{ recipient.full_name or recipient.email }} is now {{ order.status }}.",
                         "label": "Alert the team"}),
        (EndStep, {"key": "end-cancelled"}),
        (SendCampaignStep, {"key": "send-backordered", "campaign": _backordered_campaign(shop),
                            "label": "Send the backorder note"}),
    ]  # fmt: skip


RECIPES: dict[str, Recipe] = {
    "order-confirmation": Recipe(
        "Order confirmation",
        "New order -> status is Confirmed or Paid -> send the order confirmation (transactional).",
        _confirmation,
        {"trigger": "new_order", "entry_rule": "once_per_order"},
    ),
    "welcome": Recipe(
        "Welcome and follow-up",
        "New customer (registered after the flow went live) -> subscribed to email -> welcome email -> wait a "
        "week -> no order yet? -> reminder with a promo code.",
        _welcome,
        {"trigger": "new_customer", "entry_rule": "once_per_customer", "only_registered_after_live": True},
    ),
    "order-status-updates": Recipe(
        "Order status updates",
        "Order status changed into shipped / out for delivery / delivered / cancelled / refunded / backordered "
        "-> send the matching update; alert the team on cancellations.",
        _status_updates,
        {
            "trigger": "order_status_changed",
            "entry_rule": "every_time",
            "to_statuses": ["shipped", "out_for_delivery", "delivered", "cancelled", "refunded", "backordered"],
        },
    ),
}


def create_from_recipe(*, slug: str, shop: Shop | None = None, now: datetime, live: bool = False) -> Flow:
    """A new flow from a recipe, with draft campaigns made from the starter templates.
    With ``live``, the campaigns are activated (the reminder's promo pool is filled with
    generated codes) and the flow goes live; a problem raises ``ValueError``."""
    recipe = RECIPES[slug]
    with transaction.atomic():
        flow = Flow.objects.create(name=recipe.name, recipe=slug, shop=shop, **recipe.flow_fields)
        version = draft_version(flow=flow)
        for position, (step_class, values) in enumerate(recipe.build(flow, shop)):
            step_class.objects.create(version=version, position=(position + 1) * 10, **values)
        if live:
            _activate_campaigns(version)
            problems = activate_flow(flow=flow, now=now)
            if problems:
                raise ValueError(" ".join(problems))
    flow.refresh_from_db()
    return flow


def _activate_campaigns(version) -> None:  # type: ignore[no-untyped-def]
    from marketing.compliance import activate_campaign
    from marketing.promo import generate_codes

    for step in version.ordered_steps():
        if isinstance(step, SendCampaignStep):
            campaign = step.campaign
            if campaign.promo_pool is not None and not campaign.promo_pool.codes.filter(issued_at__isnull=True).exists():
                generate_codes(pool=campaign.promo_pool, count=500)
            problems = activate_campaign(campaign=campaign, accept_warnings=True)
            errors = [p.message for p in problems if getattr(p, "level", "error") == "error"]
            if errors:
                raise ValueError(f"Campaign {campaign.name!r}: " + " ".join(errors))
