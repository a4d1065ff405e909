"""The campaign preview: every variant rendered for a real customer (and order), exactly
as a send would render it, without a side effect.

Rendering goes through ``marketing.actions.preview_context`` (the send's own context:
shop, unsubscribe link, recommendations, the promo code peeked and never issued) and
``render_variant``. The editor's unsaved content can be previewed: the change page's
script posts the whole form, and the variants are read from it into rows that are never
saved. Everything runs in a transaction that is rolled back, so nothing a lookup might
write survives a preview.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.html import format_html
from django.utils.safestring import SafeString

from marketing.actions import Blocked, Deferred, SendContext, preview_context, send_campaign
from marketing.admin.common import PREVIEW_POLICY, badge
from marketing.models import Campaign, CampaignVariant, PromoPool
from marketing.models.campaigns import Profile
from marketing.rendering import RenderedContent, TemplateProblem, render_variant
from orders.models import Customer, Order

# The inline's form prefix (the variants' related name) and the content it carries.
VARIANTS_PREFIX = "variants"
CONTENT_FIELDS = (
    "subject", "preheader", "html_body", "text_body", "title", "link", "image_url", "template_name", "template_language",
)  # fmt: skip
MAX_POSTED_VARIANTS = 26


@dataclass
class VariantPreview:
    variant: CampaignVariant
    rendered: RenderedContent | None = None
    problem: TemplateProblem | None = None

    @property
    def srcdoc(self) -> str:
        return PREVIEW_POLICY + self.rendered.html if self.rendered and self.rendered.html else ""


@dataclass
class Preview:
    customer: Customer
    order: Order | None
    variants: list[VariantPreview]
    verdict: SafeString
    from_form: bool


def render_preview(
    *, campaign: Campaign, customer: Customer, order: Order | None, now: datetime, posted: Mapping[str, Any] | None = None
) -> Preview:
    """Each variant rendered for ``customer``: the editor's posted content when given,
    else the saved variants; and what a send would decide now (for the saved campaign)."""
    edited = _posted_campaign(campaign, posted) if posted else None
    variants = _posted_variants(edited, posted) if edited is not None and posted else None
    target = edited or campaign
    with transaction.atomic():
        context = preview_context(campaign=target, customer=customer, order=order, now=now)
        previews = [_render(variant, context) for variant in (variants if variants is not None else _saved(campaign))]
        verdict = _verdict(campaign, customer, order, now)
        transaction.set_rollback(True)
    return Preview(customer, order, previews, verdict, from_form=variants is not None)


def _saved(campaign: Campaign) -> list[CampaignVariant]:
    return list(campaign.variants.order_by("name"))


def _render(variant: CampaignVariant, context: dict[str, Any]) -> VariantPreview:
    try:
        return VariantPreview(variant, rendered=render_variant(variant, context))
    except TemplateProblem as problem:
        return VariantPreview(variant, problem=problem)


def _verdict(campaign: Campaign, customer: Customer, order: Order | None, now: datetime) -> SafeString:
    """What ``send_campaign`` would decide for this customer now, in a dry run."""
    verdict = send_campaign(
        campaign=campaign,
        customer=customer,
        context=SendContext(order=order),
        key=f"preview:{campaign.pk}:{customer.pk}",
        now=now,
        dry_run=True,
    )
    if isinstance(verdict, Deferred):
        return format_html("{} {}", badge("deferred", "Deferred"), verdict.send.detail if verdict.send else verdict.why)
    send = verdict.send
    if isinstance(verdict, Blocked):
        return format_html("{} {}: {}", badge("blocked", "Blocked"), send.get_reason_display(), send.detail)
    variant = f"variant {send.variant.name}" if send.variant else "a variant"
    return format_html("{} {} to {}", badge("sent", "Would be sent"), variant, send.address)


def _posted_campaign(campaign: Campaign, posted: Mapping[str, Any]) -> Campaign:
    """The campaign with the settings the editor's form holds that change the context."""
    edited = copy.copy(campaign)
    if posted.get("profile") in Profile.values:
        edited.profile = posted["profile"]
    if "promo_pool" in posted:
        pool_id = str(posted.get("promo_pool") or "")
        edited.promo_pool = PromoPool.objects.filter(pk=int(pool_id)).first() if pool_id.isdigit() else None
    return edited


def _posted_variants(campaign: Campaign, posted: Mapping[str, Any]) -> list[CampaignVariant] | None:
    """The variants as the editor's form holds them (unsaved), or None when the post
    carries no variant forms. Empty extra forms and those marked for deletion are left out."""
    try:
        total = int(posted.get(f"{VARIANTS_PREFIX}-TOTAL_FORMS", ""))
    except ValueError:
        return None
    saved = {variant.pk: variant for variant in campaign.variants.all()}
    variants = []
    for index in range(min(total, MAX_POSTED_VARIANTS)):
        prefix = f"{VARIANTS_PREFIX}-{index}-"
        if posted.get(prefix + "DELETE"):
            continue
        pk = str(posted.get(prefix + "id") or "")
        base = saved.get(int(pk)) if pk.isdigit() else None
        values = {name: posted.get(prefix + name, getattr(base, name, "")) or "" for name in CONTENT_FIELDS}
        if base is None and not any(str(value).strip() for value in values.values()):
            continue
        variant = CampaignVariant(campaign=campaign, name=str(posted.get(prefix + "name") or "?")[:40], **values)
        variant.template_parameters = _parameters(posted.get(prefix + "template_parameters"), base)
        variants.append(variant)
    return sorted(variants, key=lambda v: v.name)


def _parameters(raw: Any, base: CampaignVariant | None) -> Any:
    if raw is None:
        return base.template_parameters if base else []
    if not str(raw).strip():
        return []
    try:
        return json.loads(raw)
    except ValueError:
        # render_variant names the problem: the parameters must be a list.
        return str(raw)
