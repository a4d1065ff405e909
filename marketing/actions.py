"""Writes of the marketing room. ``send_campaign`` is the one place that decides whether
a campaign reaches a customer, and records why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from channels.actions import send_message
from marketing.audience_lookup import address_for, assign_variant
from marketing.models import Campaign, Send
from marketing.models.campaigns import CapPolicy
from marketing.models.sends import BlockReason, Decision
from marketing.promo import issue_code, peek_code
from marketing.timing import cap_frees_at, customer_zone, quiet_until
from orders.models import Customer, Order, Shop


@dataclass
class SendContext:
    """What the caller knows: the order and shop the message is about, and the event."""

    order: Order | None = None
    shop: Shop | None = None
    event: dict[str, Any] = field(default_factory=dict)

    def resolved_shop(self, customer: Customer) -> Shop | None:
        if self.shop is not None:
            return self.shop
        if self.order is not None:
            return self.order.shop
        identity = customer.identities.select_related("shop").order_by("created_at").first()
        return identity.shop if identity else Shop.objects.order_by("pk").first()


@dataclass
class Sent:
    send: Send

    decision = Decision.SENT


@dataclass
class Blocked:
    send: Send
    reason: str

    decision = Decision.BLOCKED


@dataclass
class Deferred:
    until: datetime
    why: str
    send: Send | None = None

    decision = Decision.DEFERRED


Verdict = Sent | Blocked | Deferred


def _lock(*keys: object) -> None:
    """A transaction-scoped advisory lock: callers with the same key wait for each other."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [":".join(str(k) for k in keys)])


def send_campaign(
    *,
    campaign: Campaign,
    customer: Customer,
    context: SendContext,
    key: str,
    now: datetime,
    dry_run: bool = False,
) -> Verdict:
    """Decide, issue the promo code, render and queue one message; record why.

    The same ``key`` always gives the same final answer and never a second message: a
    final decision is stored under the unique key, and calls with one key are
    serialised. A ``Deferred`` answer stores nothing final: ask again at ``until`` with
    the same key. ``dry_run`` decides and renders but writes nothing and sends nothing.
    """
    with transaction.atomic():
        if not dry_run:
            _lock("send", key)
            existing = Send.objects.filter(key=key).select_related("campaign").first()
            if existing is not None and existing.decision != Decision.DEFERRED:
                return Sent(existing) if existing.decision == Decision.SENT else Blocked(existing, existing.reason)
            if campaign.is_marketing:
                # Caps count every marketing send to this customer in the channel.
                _lock("cap", customer.pk, campaign.channel)
        else:
            existing = None
        decision = _decide(campaign, customer, context, key, now, dry_run, existing)
        return decision


def _record(
    campaign: Campaign,
    customer: Customer,
    context: SendContext,
    key: str,
    now: datetime,
    *,
    decision: str,
    reason: str = "",
    detail: str = "",
    address: str = "",
    dry_run: bool,
    existing: Send | None,
    **extra: Any,
) -> Send:
    values = {
        "campaign": campaign,
        "customer": customer,
        "order": context.order,
        "channel": campaign.channel,
        "address": address,
        "decision": decision,
        "reason": reason,
        "detail": detail,
        "decided_at": now,
        **extra,
    }
    if dry_run:
        return Send(key=key, **values)
    if existing is not None:
        for name, value in values.items():
            setattr(existing, name, value)
        existing.save()
        return existing
    return Send.objects.create(key=key, **values)


def _decide(
    campaign: Campaign,
    customer: Customer,
    context: SendContext,
    key: str,
    now: datetime,
    dry_run: bool,
    existing: Send | None,
) -> Verdict:
    from marketing.compliance import check_campaign
    from marketing.consent import consent_status
    from marketing.suppression import is_suppressed

    def block(reason: str, detail: str, **extra: Any) -> Blocked:
        send = _record(
            campaign, customer, context, key, now,
            decision=Decision.BLOCKED, reason=reason, detail=detail, dry_run=dry_run, existing=existing, **extra,
        )  # fmt: skip
        return Blocked(send, reason)

    if campaign.status != Campaign.Status.ACTIVE:
        return block(BlockReason.NOT_ACTIVE, f"The campaign is {campaign.get_status_display().lower()}.")
    errors = [p for p in check_campaign(campaign) if p.level == "error"]
    if errors:
        return block(BlockReason.NON_COMPLIANT, "; ".join(p.message for p in errors))
    variant = assign_variant(campaign, customer)
    if variant is None:
        return block(BlockReason.CONTROL_GROUP, "Held out in the control group (or no variant has weight).")
    address = address_for(customer, campaign.channel)
    if not address.valid:
        return block(BlockReason.INVALID_ADDRESS, address.why.capitalize() + ".", variant=variant, address=address.value)
    suppression = is_suppressed(campaign.channel, address.value)
    if suppression is not None:
        return block(
            BlockReason.SUPPRESSED,
            f"{address.value} is on the suppression list ({suppression.get_reason_display().lower()}).",
            variant=variant,
            address=address.value,
        )
    shop = context.resolved_shop(customer)
    if campaign.is_marketing:
        if campaign.channel == "email" and not (shop and shop.postal_address.strip()):
            # CAN-SPAM: a marketing email carries the sender's postal address.
            return block(
                BlockReason.NON_COMPLIANT,
                "The shop has no postal address; marketing email must carry one (set it on the shop).",
                variant=variant,
                address=address.value,
            )
        status = consent_status(customer, campaign.channel)
        if status == "unsubscribed":
            return block(BlockReason.UNSUBSCRIBED, "Unsubscribed from this channel.", variant=variant, address=address.value)
        if status != "subscribed":
            return block(
                BlockReason.NEVER_SUBSCRIBED, "Never subscribed to this channel.", variant=variant, address=address.value
            )
        deferral = _deferral(campaign, customer, shop, now)
        if deferral is not None:
            until, why = deferral
            first = existing.first_deferred_at if existing and existing.first_deferred_at else now
            if now - first >= timedelta(hours=campaign.defer_expiry_hours) or (
                why == "capped" and campaign.cap_policy == CapPolicy.DROP
            ):
                reason = BlockReason.CAPPED if why == "capped" and campaign.cap_policy == CapPolicy.DROP else BlockReason.EXPIRED
                return block(reason, _deferral_words(why, until), variant=variant, address=address.value)
            send = _record(
                campaign, customer, context, key, now,
                decision=Decision.DEFERRED, reason="", detail=_deferral_words(why, until), address=address.value,
                dry_run=dry_run, existing=existing, variant=variant, first_deferred_at=first, deferred_until=until,
            )  # fmt: skip
            return Deferred(until=until, why=why, send=send)
    return _render_and_send(campaign, customer, context, key, now, dry_run, existing, variant, address.value, shop)


def _deferral(campaign: Campaign, customer: Customer, shop: Shop | None, now: datetime) -> tuple[datetime, str] | None:
    quiet = quiet_until(channel=campaign.channel, zone=customer_zone(customer, shop), now=now)
    if quiet is not None:
        return quiet, "quiet_hours"
    frees = cap_frees_at(customer=customer, channel=campaign.channel, now=now)
    if frees is not None:
        return frees, "capped"
    return None


def _deferral_words(why: str, until: datetime) -> str:
    if why == "quiet_hours":
        return f"Quiet hours in the customer's time zone until {until:%Y-%m-%d %H:%M} UTC."
    return f"Frequency cap for this channel reached; it frees at {until:%Y-%m-%d %H:%M} UTC."


def _render_and_send(
    campaign: Campaign,
    customer: Customer,
    context: SendContext,
    key: str,
    now: datetime,
    dry_run: bool,
    existing: Send | None,
    variant: Any,
    address: str,
    shop: Shop | None,
) -> Verdict:
    from marketing.rendering import TemplateProblem, render_variant

    code = None
    promo_codes: dict[str, str] = {}
    if campaign.promo_pool is not None:
        if dry_run:
            promo_codes[campaign.promo_pool.slug] = peek_code(pool=campaign.promo_pool, customer=customer)
        else:
            code = issue_code(pool=campaign.promo_pool, customer=customer, send_key=key, now=now)
            if code is None:
                return _blocked(campaign, customer, context, key, now, dry_run, existing, variant, address,
                                BlockReason.NO_PROMO_CODE, f"The promo pool {campaign.promo_pool.name!r} has no free codes.")  # fmt: skip
            promo_codes[campaign.promo_pool.slug] = code.code
    unsubscribe, template_context = _template_context(
        campaign, customer, shop, context.order, now, key=key, promo_codes=promo_codes, event=context.event
    )
    try:
        rendered = render_variant(variant, template_context)
    except TemplateProblem as problem:
        return _blocked(campaign, customer, context, key, now, dry_run, existing, variant, address,
                        BlockReason.RENDER_ERROR, str(problem), promo_code=code)  # fmt: skip
    data = _channel_data(campaign, variant, rendered, unsubscribe)
    if dry_run:
        send = _record(campaign, customer, context, key, now, decision=Decision.SENT, address=address,
                       dry_run=True, existing=None, variant=variant)  # fmt: skip
        send.rendered = rendered  # type: ignore[attr-defined]
        return Sent(send)
    message = send_message(
        kind=campaign.channel,
        alias=campaign.alias or None,
        address=address,
        idempotency_key=f"send:{key}",
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        data=data,
        now=now,
    )
    send = _record(campaign, customer, context, key, now, decision=Decision.SENT, address=address, dry_run=False,
                   existing=existing, variant=variant, message=message, promo_code=code)  # fmt: skip
    return Sent(send)


def _blocked(campaign, customer, context, key, now, dry_run, existing, variant, address, reason, detail, **extra):  # type: ignore[no-untyped-def]
    send = _record(campaign, customer, context, key, now, decision=Decision.BLOCKED, reason=reason, detail=detail,
                   address=address, dry_run=dry_run, existing=existing, variant=variant, **extra)  # fmt: skip
    return Blocked(send, reason)


def _channel_data(campaign: Campaign, variant: Any, rendered: Any, unsubscribe: str) -> dict[str, Any]:
    """Channel extras the backends read (see each backend's docstring)."""
    data: dict[str, Any] = {"campaign": campaign.pk, "profile": campaign.profile}
    if campaign.sender_address:
        data["from_email" if campaign.channel == "email" else "sender"] = campaign.sender_address
    if campaign.sender_name:
        data["from_name"] = campaign.sender_name
    if campaign.reply_to:
        data["reply_to"] = campaign.reply_to
    if unsubscribe and campaign.channel == "email":
        data["list_unsubscribe_url"] = unsubscribe
    for name in ("title", "link", "image_url", "preheader"):
        value = getattr(rendered, name, "")
        if value:
            data["image" if name == "image_url" else name] = value
    if campaign.channel == "whatsapp" and variant.template_name:
        data["template"] = {
            "name": variant.template_name,
            "language": variant.template_language or "en",
            "body_parameters": list(getattr(rendered, "template_parameters", []) or []),
        }
    return data


# --- For the admin: preview, test sends, archiving ----------------------------------------


def preview_context(
    *, campaign: Campaign, customer: Customer, order: Order | None, now: datetime, key: str = "preview"
) -> dict[str, Any]:
    """The template context a send of ``campaign`` to ``customer`` (about ``order``)
    renders with, built as ``send_campaign`` builds it (same shop, unsubscribe link and
    recommendations), except that the promo code is only peeked, never issued. Writes
    nothing: for previews and test sends."""
    shop = SendContext(order=order).resolved_shop(customer)
    promo_codes: dict[str, str] = {}
    if campaign.promo_pool is not None:
        promo_codes[campaign.promo_pool.slug] = peek_code(pool=campaign.promo_pool, customer=customer)
    return _template_context(campaign, customer, shop, order, now, key=key, promo_codes=promo_codes, event={})[1]


def _template_context(
    campaign: Campaign,
    customer: Customer,
    shop: Shop | None,
    order: Order | None,
    now: datetime,
    *,
    key: str,
    promo_codes: dict[str, str],
    event: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """The unsubscribe URL (marketing only) and the template context of one send: the one
    place both a real send and a preview build it."""
    from marketing.context import build_context
    from marketing.recommendations import recommender_for
    from marketing.unsubscribe import unsubscribe_url

    unsubscribe = unsubscribe_url(customer=customer, channel=campaign.channel, campaign=campaign) if campaign.is_marketing else ""
    context = build_context(
        customer=customer,
        shop=shop,
        order=order,
        campaign=campaign,
        now=now,
        send_key=key,
        promo_codes=promo_codes,
        recommend=recommender_for(customer, now, shop),
        unsubscribe_url=unsubscribe,
        event=event,
    )
    return unsubscribe, context


TEST_PREFIX = "[TEST] "


def send_test_message(
    *,
    campaign: Campaign,
    variant: Any,
    customer: Customer,
    order: Order | None,
    address: str,
    now: datetime,
    requested_by: str,
) -> Any:
    """Render ``variant`` for ``customer`` (and ``order``) and queue it to ``address``
    through the campaign's channel, marked as a test: idempotency key ``test:<uuid4>``,
    data ``{"test": True, ...}``, the subject (and a push title, and the text of channels
    without a subject) prefixed "[TEST] ". No send record is written and no promo code
    issued: a test decides nothing about the customer and counts in no statistics.
    Returns the ledger ``Message``. Raises ``TemplateProblem`` when the variant does not
    render, ``ImproperlyConfigured`` when no backend sends the campaign's channel and
    ``ValueError`` when the campaign's alias sends another kind."""
    import uuid

    from channels.kinds import ChannelKind
    from marketing.rendering import render_variant

    context = preview_context(campaign=campaign, customer=customer, order=order, now=now, key="test")
    rendered = render_variant(variant, context)
    # No List-Unsubscribe header: a one-click unsubscribe pressed in the tester's mailbox
    # would unsubscribe the customer the test was rendered for.
    data = _channel_data(campaign, variant, rendered, unsubscribe="")
    data.update(test=True, requested_by=requested_by, rendered_for_customer=customer.pk)
    if data.get("title"):
        data["title"] = TEST_PREFIX + data["title"]
    text = rendered.text
    if campaign.channel != ChannelKind.EMAIL and text:
        text = TEST_PREFIX + text
    return send_message(
        kind=campaign.channel,
        alias=campaign.alias or None,
        address=address,
        idempotency_key=f"test:{uuid.uuid4()}",
        subject=TEST_PREFIX + (rendered.subject or campaign.name),
        text=text,
        html=rendered.html,
        data=data,
        now=now,
    )


def archive_campaign(*, campaign: Campaign) -> bool:
    """Archive the campaign: from now on every send of it is blocked (``not_active``);
    its sends, statistics and conversions stay. Activating it again goes through
    ``marketing.compliance.activate_campaign``. Returns False when it was archived
    already."""
    if campaign.status == Campaign.Status.ARCHIVED:
        return False
    campaign.status = Campaign.Status.ARCHIVED
    campaign.save(update_fields=["status", "updated_at"])
    return True
