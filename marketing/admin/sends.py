"""The send record: why each message of a campaign went or did not. Read-only evidence;
``marketing.actions.send_campaign`` is the only writer."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from marketing.admin.common import ReadOnlyAdmin, badge, pre, short
from marketing.models import Send


@admin.register(Send)
class SendAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "campaign", "variant_name", "customer", "decision_badge", "reason", "detail_excerpt"]
    list_display += ["message_link"]
    list_display_links = ["decided_at"]
    list_filter = ["decision", "reason", "channel", "campaign"]
    search_fields = ["customer__email", "key"]
    date_hierarchy = "decided_at"
    ordering = ["-decided_at", "-id"]
    show_full_result_count = False  # a second COUNT(*) over every send on each page
    fieldsets = [
        (None, {"fields": ["campaign", "variant", "customer", "order", "key"]}),
        ("Decision", {"fields": ["decision_badge", "reason", "detail_full", ("decided_at", "first_deferred_at", "deferred_until")]}),
        ("Delivery", {"fields": ["channel", "address", "message_link", "promo_code"]}),
    ]
    readonly_fields = ["decision_badge", "detail_full", "message_link"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Send]:
        # The ledger message's bodies can be large; the list needs its id and status.
        return (
            super()
            .get_queryset(request)
            .select_related("campaign", "variant", "customer", "message", "promo_code", "order")
            .defer("message__text", "message__html", "message__data")
        )

    @admin.display(description="Variant", ordering="variant__name")
    def variant_name(self, send: Send) -> str:
        return send.variant.name if send.variant else "-"

    @admin.display(description="Decision", ordering="decision")
    def decision_badge(self, send: Send) -> SafeString:
        return badge(send.decision, send.get_decision_display())

    @admin.display(description="Detail")
    def detail_excerpt(self, send: Send) -> SafeString | str:
        return short(send.detail, 90) if send.detail else ""

    @admin.display(description="Detail")
    def detail_full(self, send: Send) -> SafeString | str:
        return pre(send.detail) if send.detail else "-"

    @admin.display(description="Ledger message")
    def message_link(self, send: Send) -> SafeString | str:
        if send.message_id is None:
            return "-"
        url = reverse("admin:channels_message_change", args=[send.message_id])
        return format_html('<a href="{}">#{} ({})</a>', url, send.message_id, send.message.get_status_display())

