"""The orders room in the admin: shop connections, the shops' mirror, the inbox and its logs.

The mirror (customers, orders, products) and the inbox are read-only here: the shop owns
that data and the inbox is evidence. Staff edit shop connections, status maps and the
notes on privacy requests; every write that an action button makes is a function in
``orders.actions``.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Case, F, QuerySet, Value, When
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from orders.actions import replay_deliveries, resolve_privacy_requests
from orders.models import (
    Customer,
    CustomerIdentity,
    Order,
    OrderLine,
    OrderStatusChange,
    PrivacyRequest,
    Product,
    ProductView,
    RejectedRequest,
    Shop,
    StatusMapping,
    WebhookDelivery,
)
from orders.statuses import OrderStatus

SECRET_NOTE = (
    "The platform signs (BigCommerce: sends) every webhook with this secret. A change here takes effect at once: "
    "until the platform uses the new secret too, its requests are refused and listed under rejected requests. "
    "Changing the slug or platform changes the URL."
)
# A 2 MB body pretty-printed into one <pre> makes the page crawl; staff need the start.
BODY_DISPLAY_LIMIT = 200_000

def changelist_url(model: type[Any], **filters: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse(f"admin:orders_{model._meta.model_name}_changelist")
    return f"{url}?{query}" if query else url


def pretty_json(value: object) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


class ReadOnlyAdmin(admin.ModelAdmin):
    """A view of data someone else owns: no add, no edit. Deletion stays with the
    permission system (a customer may have to be erased on request)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Shops ---------------------------------------------------------------------


@admin.register(Shop)
class ShopAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "platform", "is_active", "webhook_url", "rejected_count", "last_rejected_at"]
    list_filter = ["platform", "is_active"]
    search_fields = ["name", "slug", "url"]
    ordering = ["name"]
    readonly_fields = [
        "webhook_setup",
        "rejections",
        "deliveries",
        "rejected_count",
        "last_rejected_at",
        "last_sync_message",
        "created_at",
    ]
    fieldsets = [
        ("Webhook", {"fields": ["webhook_setup", "webhook_secret"], "description": SECRET_NOTE}),
        ("Shop", {"fields": ["name", "slug", "platform", "is_active", "url", "support_email", "postal_address"]}),
        ("Locale", {"fields": ["currency", "timezone", "country"]}),
        ("API access (for catch-up and lookups)", {"fields": ["api_url", "api_key", "api_secret", "synced_until", "last_sync_message"]}),
        ("Health", {"fields": ["rejections", "deliveries", "created_at"]}),
    ]

    @admin.display(description="Webhook URL")
    def webhook_url(self, shop: Shop) -> str:
        return shop.webhook_url()

    @admin.display(description="Where to paste it")
    def webhook_setup(self, shop: Shop | None) -> str:
        if shop is None or shop.pk is None:
            return "Save the shop to see the webhook URL to paste into the platform."
        return format_html(
            '<p><code style="font-size:1.25em;user-select:all">{}</code></p><p>{}</p>',
            shop.webhook_url(),
            shop.webhook_instructions(),
        )

    @admin.display(description="Rejected requests")
    def rejections(self, shop: Shop) -> str:
        if shop.pk is None:
            return "-"
        if not shop.rejected_count:
            return "None: every request so far carried a valid signature."
        return format_html(
            '{} refused, the last at {}. <a href="{}">See the rejected requests</a>: many of them usually '
            "mean the secret here and the platform's differ.",
            shop.rejected_count,
            timezone.localtime(shop.last_rejected_at).strftime("%Y-%m-%d %H:%M %Z") if shop.last_rejected_at else "-",
            changelist_url(RejectedRequest, shop__id__exact=shop.pk),
        )

    @admin.display(description="Deliveries")
    def deliveries(self, shop: Shop) -> str:
        if shop.pk is None:
            return "-"
        return format_html(
            '<a href="{}">All deliveries</a> &middot; <a href="{}">failed ones</a>',
            changelist_url(WebhookDelivery, shop__id__exact=shop.pk),
            changelist_url(WebhookDelivery, shop__id__exact=shop.pk, status__exact=WebhookDelivery.Status.FAILED),
        )


# --- Customers -----------------------------------------------------------------


class CustomerIdentityInline(ReadOnlyInline):
    model = CustomerIdentity
    fields = ["shop", "external_id", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[CustomerIdentity]:
        return super().get_queryset(request).select_related("shop")


CONTACT_FIELDS = [("email", "email_raw", "email_valid"), ("phone", "phone_raw", "phone_valid")]
CONTACT_NOTE = "Normalised, beside what the shop sent. A value we could not read leaves the normalised field empty."
CONSENT_FIELDS = ["accepts_email_marketing", "accepts_sms_marketing"]


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "email", "phone", "email_valid", "phone_valid"]
    list_display += ["accepts_email_marketing", "accepts_sms_marketing", "created_at"]
    list_filter = ["email_valid", "phone_valid", "accepts_email_marketing", "accepts_sms_marketing"]
    list_filter += [("identities__shop", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["email", "email_raw", "phone", "phone_raw", "first_name", "last_name", "identities__external_id"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    inlines = [CustomerIdentityInline]
    readonly_fields = ["recent_orders", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["first_name", "last_name", "locale", ("timezone", "timezone_raw")]}),
        ("Contact", {"fields": CONTACT_FIELDS, "description": CONTACT_NOTE}),
        ("Consent as the shop reports it", {"fields": CONSENT_FIELDS, "description": "Unknown: the shop never said."}),
        ("Orders", {"fields": ["recent_orders"]}),
        ("Record", {"fields": ["registered_at", "source_updated_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="Recent orders")
    def recent_orders(self, customer: Customer) -> str:
        orders = list(customer.orders.select_related("shop").order_by("-placed_at")[:10])
        if not orders:
            return "No orders."
        rows = format_html_join(
            "",
            '<li><a href="{}">{}</a> at {}: {} {} {}, {}</li>',
            (
                (reverse("admin:orders_order_change", args=[o.pk]), o.number or o.external_id, o.shop.slug, o.total)
                + (o.currency, timezone.localtime(o.placed_at).strftime("%Y-%m-%d %H:%M"), o.get_status_display())
                for o in orders
            ),
        )
        return format_html(
            '<ul style="margin-left:0">{}</ul><a href="{}">All their orders ({})</a>',
            rows,
            changelist_url(Order, customer__id__exact=customer.pk),
            customer.orders.count(),
        )


# --- Orders --------------------------------------------------------------------


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["position", "sku", "name", "product", "quantity", "price", "total"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderLine]:
        return super().get_queryset(request).select_related("product")


class OrderStatusChangeInline(ReadOnlyInline):
    model = OrderStatusChange
    verbose_name_plural = "status history"
    fields = ["changed_at", "old_status", "new_status", "old_raw_status", "new_raw_status", "was_applied", "delivery"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderStatusChange]:
        # The delivery's body may be megabytes; the history only needs its name and link.
        qs = super().get_queryset(request).select_related("delivery")
        return qs.defer("delivery__body", "delivery__headers")

    @admin.display(description="Applied")
    def was_applied(self, change: OrderStatusChange) -> str:
        return "yes" if change.applied else "no: older than the state already applied (history only)"


class HasProblemsFilter(admin.SimpleListFilter):
    title = "problems"
    parameter_name = "problems"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "With problems"), ("no", "Without")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        return {"yes": queryset.exclude(problems=[]), "no": queryset.filter(problems=[])}.get(self.value(), queryset)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["number_or_id", "shop", "customer", "status", "raw_status", "amount", "placed_at", "problem_count"]
    list_filter = ["status", "shop", ("raw_status", admin.AllValuesFieldListFilter), HasProblemsFilter]
    list_filter += [("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["number", "external_id", "email", "customer__email"]
    list_select_related = ["shop", "customer"]
    ordering = ["-placed_at"]
    date_hierarchy = "placed_at"
    inlines = [OrderLineInline, OrderStatusChangeInline]
    readonly_fields = ["problem_list", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["shop", ("number", "external_id"), "customer", "email", "placed_at"]}),
        ("Status", {"fields": [("status", "raw_status"), "source_updated_at", "deleted_at"]}),
        ("Problems", {"fields": ["problem_list"]}),
        ("Amounts", {"fields": ["currency", "subtotal", "shipping_total", "tax_total", "discount_total", "total"]}),
        ("Shipping", {"fields": ["shipping_address", ("carrier", "tracking_number"), "tracking_url"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Order", ordering="number")
    def number_or_id(self, order: Order) -> str:
        return order.number or order.external_id

    @admin.display(description="Total", ordering="total")
    def amount(self, order: Order) -> str:
        return f"{order.total} {order.currency}"

    @admin.display(description="Problems")
    def problem_count(self, order: Order) -> str:
        return str(len(order.problems)) if order.problems else ""

    @admin.display(description="Odd input we accepted")
    def problem_list(self, order: Order) -> str:
        if not order.problems:
            return "None."
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((str(p),) for p in order.problems)))


# --- The inbox and its logs ----------------------------------------------------


def describe_body(body: bytes) -> SafeString:
    """The body as staff can read it: pretty JSON when it parses, else text with
    replacement characters for bytes that are not UTF-8. Always with its size."""
    try:
        text, kind = json.dumps(json.loads(body), indent=2, ensure_ascii=False), "JSON"
    except ValueError:  # includes UnicodeDecodeError
        text, kind = body.decode("utf-8", errors="replace"), "text (not JSON)"
    cut = ""
    if len(text) > BODY_DISPLAY_LIMIT:
        text, cut = text[:BODY_DISPLAY_LIMIT], f"; the first {BODY_DISPLAY_LIMIT:,} characters shown"
    style = "white-space:pre-wrap;max-height:60em;overflow:auto"
    return format_html('<p>{} bytes, {}{}</p><pre style="{}">{}</pre>', f"{len(body):,}", kind, cut, style, text)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "received_at", "shop", "protocol", "topic", "source", "status", "attempts", "outcome", "size"]
    list_filter = ["status", "protocol", "topic", "source", "shop"]
    list_display_links = ["id", "received_at"]
    search_fields = ["dedupe_key", "topic", "error", "result"]
    list_select_related = ["shop"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    actions = ["replay_selected"]
    fields = ["shop", ("protocol", "topic", "source"), "dedupe_key", ("status", "attempts"), "error", "result"]
    fields += [("received_at", "enqueued_at", "processed_at"), "pretty_headers", "decoded_body"]
    readonly_fields = ["pretty_headers", "decoded_body"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        # Lists must not pull every body; the database measures them instead.
        return super().get_queryset(request).annotate(body_size=Length("body")).defer("body", "headers")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # nothing is lost: the inbox is the evidence of what shops sent

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.change_webhookdelivery")

    @admin.display(description="Error / result")
    def outcome(self, delivery: WebhookDelivery) -> str:
        text = delivery.error or delivery.result
        short = text if len(text) <= 120 else text[:119] + "\u2026"
        return format_html('<span title="{}">{}</span>', text, short)

    @admin.display(description="Bytes", ordering="body_size")
    def size(self, delivery: WebhookDelivery) -> int:
        return delivery.body_size  # type: ignore[attr-defined]

    @admin.display(description="Headers")
    def pretty_headers(self, delivery: WebhookDelivery) -> str:
        return pretty_json(delivery.headers)

    @admin.display(description="Body")
    def decoded_body(self, delivery: WebhookDelivery) -> str:
        return describe_body(delivery.body_bytes)

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        self._report_replay(request, requested=len(ids), replayed=replay_deliveries(delivery_ids=ids))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_replay": self.has_replay_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        replay = self.admin_site.admin_view(require_POST(self.replay_one))
        return [path("<int:delivery_id>/replay/", replay, name="orders_webhookdelivery_replay"), *super().get_urls()]

    def replay_one(self, request: HttpRequest, delivery_id: int) -> HttpResponse:
        if not self.has_replay_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(WebhookDelivery.objects.only("pk"), pk=delivery_id)
        self._report_replay(request, requested=1, replayed=replay_deliveries(delivery_ids=[delivery.pk]))
        return HttpResponseRedirect(reverse("admin:orders_webhookdelivery_change", args=[delivery.pk]))

    def _report_replay(self, request: HttpRequest, *, requested: int, replayed: int) -> None:
        noun = "delivery" if replayed == 1 else "deliveries"
        if replayed:
            self.message_user(request, f"Queued {replayed} {noun} for processing again.", messages.SUCCESS)
        if requested > replayed:
            left = f"{requested - replayed} already pending: left as they are, a worker will process them."
            self.message_user(request, left, messages.WARNING)


@admin.register(RejectedRequest)
class RejectedRequestAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "status_code", "shop", "path", "reason", "remote_addr", "body_size"]
    list_filter = ["status_code", "shop"]
    search_fields = ["path", "reason", "remote_addr"]
    list_select_related = ["shop"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    fields = ["received_at", "shop", "path", "status_code", "reason", "remote_addr", "pretty_headers", "body"]
    readonly_fields = ["pretty_headers", "body"]

    @admin.display(description="Headers")
    def pretty_headers(self, rejected: RejectedRequest) -> str:
        return pretty_json(rejected.headers)

    @admin.display(description="Body (truncated)")
    def body(self, rejected: RejectedRequest) -> str:
        excerpt = '<p>{} bytes received; the first 2 KB kept</p><pre style="white-space:pre-wrap">{}</pre>'
        return format_html(excerpt, f"{rejected.body_size:,}", rejected.body_excerpt)


class OpenResolvedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[PrivacyRequest]) -> QuerySet[PrivacyRequest]:
        if self.value() not in ("open", "resolved"):
            return queryset
        return queryset.filter(resolved_at__isnull=self.value() == "open")


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    list_display = ["kind", "shop", "who", "received_at", "is_open", "resolved_at", "resolved_by"]
    list_filter = [OpenResolvedFilter, "kind", "shop"]
    search_fields = ["email", "customer_external_id", "customer__email", "shop__slug", "notes"]
    list_select_related = ["shop", "customer"]
    # PostgreSQL sorts NULL last in ascending order; open requests have no resolved_at.
    ordering = [F("resolved_at").asc(nulls_first=True), "-received_at"]
    actions = ["mark_resolved"]
    readonly_fields = ["kind", "shop", "customer", "customer_external_id", "email", "order_ids", "received_at"]
    readonly_fields += ["delivery", "resolved_at", "resolved_by"]
    fields = ["kind", "shop", "customer", ("customer_external_id", "email"), "order_ids", "received_at", "delivery"]
    fields += [("resolved_at", "resolved_by"), "notes"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        open_count = PrivacyRequest.objects.filter(resolved_at__isnull=True).count()
        title = f"Privacy requests: {open_count} open" if open_count else "Privacy requests: none open"
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    @admin.display(description="Customer")
    def who(self, request_row: PrivacyRequest) -> str:
        return str(request_row.customer or request_row.email or request_row.customer_external_id or "-")

    @admin.display(description="Open", boolean=True, ordering="resolved_at")
    def is_open(self, request_row: PrivacyRequest) -> bool:
        return request_row.is_open

    @admin.action(description="Mark resolved", permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[PrivacyRequest]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        done = resolve_privacy_requests(request_ids=ids, by=request.user.get_username(), now=timezone.now())
        self.message_user(request, f"Marked {done} privacy request{'s' if done != 1 else ''} resolved.")
        if len(ids) > done:
            self.message_user(request, f"{len(ids) - done} already resolved: kept as they were.", messages.WARNING)


# --- Status maps and products --------------------------------------------------


@admin.register(StatusMapping)
class StatusMappingAdmin(admin.ModelAdmin):
    list_display = ["raw_status", "platform", "status", "needs_mapping", "first_seen_at", "updated_at"]
    list_display_links = ["raw_status"]
    list_editable = ["status"]
    list_filter = ["platform", "status"]
    search_fields = ["raw_status"]
    fields = ["platform", "raw_status", "status", "first_seen_at", "updated_at"]
    readonly_fields = ["first_seen_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StatusMapping]:
        unmapped = Case(
            When(status=OrderStatus.UNKNOWN, then=Value(True)), default=Value(False), output_field=BooleanField()
        )
        # Annotated before ordering: the ordering below sorts on the annotation.
        return StatusMapping.objects.annotate(unmapped=unmapped).order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # Raw statuses a shop sent that nothing maps come first: someone has to map them.
        return ["-unmapped", F("first_seen_at").desc(nulls_last=True), "platform", "raw_status"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        unmapped = StatusMapping.objects.filter(status=OrderStatus.UNKNOWN).count()
        context = dict(extra_context or {})
        if unmapped:
            context["title"] = f"Status map: {unmapped} raw status{'es' if unmapped != 1 else ''} not mapped yet"
        return super().changelist_view(request, context)

    @admin.display(description="Needs mapping", boolean=True, ordering="-unmapped")
    def needs_mapping(self, mapping: StatusMapping) -> bool:
        return mapping.status == OrderStatus.UNKNOWN


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ["name", "sku", "shop", "price", "updated_at"]
    list_filter = ["shop"]
    search_fields = ["name", "sku", "external_id"]
    list_select_related = ["shop"]
    ordering = ["name", "id"]
    readonly_fields = ["updated_at"]


@admin.register(ProductView)
class ProductViewAdmin(ReadOnlyAdmin):
    list_display = ["viewed_at", "customer", "product", "shop"]
    list_filter = [("product__shop", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["customer__email", "product__name", "product__sku"]
    list_select_related = ["customer", "product__shop"]
    date_hierarchy = "viewed_at"
    ordering = ["-viewed_at", "-id"]

    @admin.display(description="Shop", ordering="product__shop__name")
    def shop(self, view: ProductView) -> str:
        return str(view.product.shop)
