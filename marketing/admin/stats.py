"""What a campaign did, counted for its admin page: per variant, the control group, and
the blocked sends. Each figure is one grouped query over the campaign's sends, whatever
their number."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum

from marketing.context import format_money
from marketing.conversions import attribution_windows
from marketing.models import Campaign, Conversion, Send
from marketing.models.sends import BlockReason, Decision
from orders.models import Order

RECENT_BLOCKED = 20
ADMIN_LOCALE = "en_US"


@dataclass
class VariantRow:
    """One line of the variant table. ``variant_id`` None with ``label`` "Control group"
    is the held-out customers; None otherwise is sends blocked before a variant was
    chosen (the campaign was not active, or failed its compliance check)."""

    label: str
    variant_id: int | None
    weight: int | None = None
    is_control: bool = False
    sent: int = 0
    deferred: int = 0
    blocked: dict[str, int] = field(default_factory=dict)
    opened: int = 0
    clicked: int = 0
    conversions: int = 0
    revenue: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def blocked_total(self) -> int:
        return sum(self.blocked.values())

    @property
    def blocked_words(self) -> list[tuple[str, int]]:
        return sorted(((BlockReason(reason).label, n) for reason, n in self.blocked.items()), key=lambda x: -x[1])

    @property
    def conversion_rate(self) -> str:
        return percent(self.conversions, self.sent)

    @property
    def revenue_words(self) -> str:
        return money_list(self.revenue)


@dataclass
class Lift:
    """Customers who ordered within the channel's send window after a sent message,
    against the same for the held-out control group: the same measure on both sides,
    not last-touch attribution (which the control group, receiving nothing, cannot have)."""

    window: timedelta
    treated: int
    treated_ordered: int
    control: int
    control_ordered: int

    @property
    def treated_rate(self) -> str:
        return percent(self.treated_ordered, self.treated)

    @property
    def control_rate(self) -> str:
        return percent(self.control_ordered, self.control)

    @property
    def lift(self) -> str:
        if not (self.treated and self.control and self.control_ordered):
            return "not measurable yet"
        treated, control = self.treated_ordered / self.treated, self.control_ordered / self.control
        return f"{(treated - control) / control * 100:+.1f}%"

    @property
    def window_words(self) -> str:
        hours = self.window.total_seconds() / 3600
        return f"{hours / 24:g} days" if hours >= 48 and hours % 24 == 0 else f"{hours:g} hours"


def money_list(rows: list[tuple[str, Decimal]]) -> str:
    """Sums per currency side by side ("$1,250.00, €80.00"): never added together."""
    return ", ".join(format_money(total, currency, ADMIN_LOCALE) for currency, total in rows)


def percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "-"


def variant_rows(campaign: Campaign) -> list[VariantRow]:
    """The variants (by name), then sends blocked before a variant was chosen, then the
    control group, each with its counts."""
    rows: dict[int | None, VariantRow] = {
        variant.pk: VariantRow(f"Variant {variant.name}", variant.pk, variant.weight)
        for variant in campaign.variants.order_by("name")
    }
    unassigned = VariantRow("Before a variant was chosen", None)
    control = VariantRow("Control group (held out)", None, is_control=True)

    def row(variant_id: int | None, reason: str = "") -> VariantRow:
        if variant_id is None:
            return control if reason == BlockReason.CONTROL_GROUP else unassigned
        # A variant deleted since keeps its sends' rows under a label of its own.
        return rows.setdefault(variant_id, VariantRow("A deleted variant", variant_id))

    sends = Send.objects.filter(campaign=campaign).order_by()
    for item in sends.values("variant_id", "decision", "reason").annotate(n=Count("id")):
        target = row(item["variant_id"], item["reason"])
        if item["decision"] == Decision.SENT:
            target.sent += item["n"]
        elif item["decision"] == Decision.DEFERRED:
            target.deferred += item["n"]
        else:
            target.blocked[item["reason"]] = target.blocked.get(item["reason"], 0) + item["n"]
    engagement = sends.filter(decision=Decision.SENT).values("variant_id").annotate(
        opened=Count("id", filter=Q(message__opened_at__isnull=False)),
        clicked=Count("id", filter=Q(message__clicked_at__isnull=False)),
    )
    for item in engagement:
        target = row(item["variant_id"])
        target.opened, target.clicked = item["opened"], item["clicked"]
    conversions = (
        Conversion.objects.filter(send__campaign=campaign)
        .order_by()
        .values("send__variant_id", "currency")
        .annotate(n=Count("id"), total=Sum("revenue"))
        .order_by("currency")
    )
    for item in conversions:
        target = row(item["send__variant_id"])
        target.conversions += item["n"]
        target.revenue.append((item["currency"], item["total"]))
    extra = [r for r in (unassigned, control) if r.sent or r.blocked_total or r.deferred or r is control and campaign.control_percent]
    return [*rows.values(), *extra]


def lift(campaign: Campaign) -> Lift | None:
    """Treated against control, or None when the campaign holds nobody out or the
    channel's send window is turned off."""
    if not campaign.control_percent and not Send.objects.filter(
        campaign=campaign, reason=BlockReason.CONTROL_GROUP
    ).exists():
        return None
    touches = attribution_windows()
    window = touches.get(campaign.channel, touches["*"]).get(Conversion.Touch.SEND)
    if not window:
        return None
    treated = Send.objects.filter(campaign=campaign, decision=Decision.SENT)
    control = Send.objects.filter(campaign=campaign, decision=Decision.BLOCKED, reason=BlockReason.CONTROL_GROUP)
    return Lift(
        window=window,
        treated=treated.values("customer_id").distinct().count(),
        treated_ordered=_customers_who_ordered(treated, window),
        control=control.values("customer_id").distinct().count(),
        control_ordered=_customers_who_ordered(control, window),
    )


def _customers_who_ordered(sends: QuerySet[Send], window: timedelta) -> int:
    """How many of the customers of ``sends`` placed an order within ``window`` after one
    of them was decided."""
    followed = sends.filter(
        customer_id=OuterRef("customer_id"),
        decided_at__lte=OuterRef("placed_at"),
        decided_at__gte=OuterRef("placed_at") - window,
    )
    orders = Order.objects.filter(customer_id__in=Subquery(sends.values("customer_id"))).filter(Exists(followed))
    return orders.order_by().values("customer_id").distinct().count()


def blocked_summary(campaign: Campaign) -> list[tuple[str, str, int]]:
    """(reason, its words, count) of the campaign's blocked sends, most frequent first."""
    rows = (
        Send.objects.filter(campaign=campaign, decision=Decision.BLOCKED)
        .order_by()
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
    )
    return [(row["reason"], BlockReason(row["reason"]).label if row["reason"] else "-", row["n"]) for row in rows]


def recent_blocked(campaign: Campaign) -> list[Send]:
    return list(
        Send.objects.filter(campaign=campaign, decision=Decision.BLOCKED)
        .select_related("customer", "variant")
        .order_by("-decided_at", "-id")[:RECENT_BLOCKED]
    )


def revenue_for(campaign_ids: list[int]) -> dict[int, list[tuple[str, Decimal]]]:
    """Revenue per currency of each campaign, in one query for a page of the list."""
    found: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    rows = (
        Conversion.objects.filter(send__campaign_id__in=campaign_ids)
        .order_by()
        .values("send__campaign_id", "currency")
        .annotate(total=Sum("revenue"))
        .order_by("send__campaign_id", "currency")
    )
    for row in rows:
        found[row["send__campaign_id"]].append((row["currency"], row["total"]))
    return found
