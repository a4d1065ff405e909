"""Who we may speak to: consent and its history, the suppression list, our tags, and
the addresses the shop does not tell us. Every change staff make goes through the
function that owns it (``set_consent``, ``suppress``, ``import_suppressions_csv``,
``tag_customer``), never a raw edit of the row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from marketing.admin.common import ReadOnlyAdmin, badge, page_context, posted, short
from marketing.consent import set_consent
from marketing.forms import ConsentForm, ContactPointForm, CustomerTagForm, SuppressionForm, SuppressionImportForm, TagForm
from marketing.models import Consent, ConsentEvent, ContactPoint, CustomerTag, Suppression, Tag
from marketing.models.audience import ConsentSource, SuppressionReason
from marketing.suppression import import_suppressions_csv, suppress
from marketing.tags import tag_customer, untag_customer

HISTORY_SHOWN = 50


# --- Consent -------------------------------------------------------------------------


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ["customer", "channel", "status_badge", "source", "changed_at", "detail"]
    list_filter = ["channel", "status", "source"]
    search_fields = ["customer__email", "customer__phone"]
    list_select_related = ["customer"]
    ordering = ["-changed_at", "-id"]
    fields = ["customer", "channel", "status_badge", "source", "changed_at", "detail", "history"]
    readonly_fields = ["status_badge", "history"]

    def has_record_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("marketing.change_consent")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, consent: Consent) -> SafeString:
        return badge(consent.status, consent.get_status_display())

    @admin.display(description="History (newest first)")
    def history(self, consent: Consent) -> SafeString | str:
        events = ConsentEvent.objects.filter(customer_id=consent.customer_id, channel=consent.channel)
        events = list(events.order_by("-occurred_at", "-id")[:HISTORY_SHOWN])
        if not events:
            return "No change recorded."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (timezone.localtime(e.occurred_at).strftime("%Y-%m-%d %H:%M %Z"), e.get_old_status_display() or "-")
                + (e.get_new_status_display(), e.get_source_display(), e.detail)
                for e in events
            ),
        )
        head = "<tr><th>When</th><th>From</th><th>To</th><th>How</th><th>Detail</th></tr>"
        return format_html('<table class="herald-table"><thead>{}</thead><tbody>{}</tbody></table>', SafeString(head), rows)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "can_record": self.has_record_permission(request)}
        return super().changelist_view(request, context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_record": self.has_record_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        record = self.admin_site.admin_view(self.record_view)
        return [path("record/", record, name="marketing_consent_record"), *super().get_urls()]

    def record_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_record_permission(request):
            raise PermissionDenied
        initial = {key: request.GET[key] for key in ("customer", "channel") if key in request.GET}
        form = ConsentForm(*posted(request), initial=initial)
        if request.method == "POST" and form.is_valid():
            data, who = form.cleaned_data, request.user.get_username()
            customer, channel = data["customer"], data["channel"]
            detail = f"By {who}: {data['note']}" if data["note"] else f"By {who}"
            changed = set_consent(
                customer=customer, channel=channel, status=data["status"], source=ConsentSource.STAFF,
                now=timezone.now(), detail=detail,
            )  # fmt: skip
            consent = Consent.objects.get(customer=customer, channel=channel)
            if changed:
                self.message_user(request, f"{customer}: {consent.get_channel_display()} is now {consent.get_status_display().lower()}.")
            else:
                self.message_user(request, f"{customer} already was {consent.get_status_display().lower()}; nothing changed.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:marketing_consent_change", args=[consent.pk]))
        context = page_context(self, request, "Record a consent", form=form, submit="Record")
        context["intro"] = (
            "Record what the customer told you (by phone, by email, at the till). It applies at once, is kept in the "
            "consent history with your name, and is what sends check from now on."
        )
        return TemplateResponse(request, "admin/marketing/form_page.html", context)


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "customer", "channel", "old_status", "new_status", "source", "detail"]
    list_filter = ["channel", "source", "new_status"]
    search_fields = ["customer__email", "customer__phone", "detail"]
    list_select_related = ["customer"]
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at", "-id"]


# --- The suppression list ----------------------------------------------------------------


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionForm
    list_display = ["value", "channel_words", "reason", "detail", "created_at"]
    list_filter = ["reason", "channel"]
    search_fields = ["value"]
    ordering = ["-created_at", "-id"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an entry is added or deleted; its value is what it is

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> list[str]:
        return ["value", "channel", "reason", "detail", "created_at"] if obj else ["value", "channel", "detail"]

    @admin.display(description="Channel", ordering="channel")
    def channel_words(self, row: Suppression) -> str:
        return row.get_channel_display() if row.channel else "All channels"

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        detail = obj.detail or f"Added by {request.user.get_username()}"
        row = suppress(value=obj.value, channel=obj.channel, reason=SuppressionReason.MANUAL, detail=detail, now=timezone.now())
        obj.pk, obj.value, obj.reason, obj.detail, obj.created_at = row.pk, row.value, row.reason, row.detail, row.created_at
        obj._state.adding = False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "can_import": self.has_add_permission(request)}
        return super().changelist_view(request, context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="marketing_suppression_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SuppressionImportForm(*posted(request))
        if request.method == "POST" and form.is_valid():
            report = import_suppressions_csv(
                form.cleaned_data["file"], now=timezone.now(), default_reason=form.cleaned_data["reason"]
            )
            first, *refused = report.summary().split("\n")
            self.message_user(request, first, messages.SUCCESS if report.ok else messages.WARNING)
            for line in refused:
                self.message_user(request, line, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:marketing_suppression_changelist"))
        context = page_context(self, request, "Import suppressions from CSV", form=form, submit="Import")
        context["intro"] = (
            "Rows are added as the list stores them (emails lowercased, phone numbers in international format). "
            "Good rows are kept even when others are refused; refused rows are listed with their line numbers."
        )
        return TemplateResponse(request, "admin/marketing/form_page.html", context)


# --- Tags --------------------------------------------------------------------------------


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    form = TagForm
    list_display = ["name", "customer_count"]
    search_fields = ["name"]
    ordering = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return super().get_queryset(request).annotate(customers_n=Count("customers"))

    @admin.display(description="Customers", ordering="customers_n")
    def customer_count(self, tag: Tag) -> SafeString:
        url = reverse("admin:marketing_customertag_changelist") + f"?tag__id__exact={tag.pk}"
        return format_html('<a href="{}">{}</a>', url, tag.customers_n)  # type: ignore[attr-defined]


@admin.register(CustomerTag)
class CustomerTagAdmin(admin.ModelAdmin):
    form = CustomerTagForm
    autocomplete_fields = ["customer"]
    list_display = ["customer", "tag", "source", "created_at"]
    list_filter = ["tag"]
    search_fields = ["customer__email", "tag__name"]
    list_select_related = ["customer", "tag"]
    ordering = ["-created_at", "-id"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a tag is put on or taken off

    def get_fields(self, request: HttpRequest, obj: CustomerTag | None = None) -> list[str]:
        return ["customer", "tag", "source", "created_at"] if obj else ["customer", "tag_name"]

    def save_model(self, request: HttpRequest, obj: CustomerTag, form: Any, change: bool) -> None:
        name, source = form.cleaned_data["tag_name"], f"staff:{request.user.get_username()}"
        tag_customer(customer=obj.customer, tag_name=name, source=source, now=timezone.now())
        row = CustomerTag.objects.select_related("tag").get(customer=obj.customer, tag__name=name)
        obj.pk, obj.tag, obj.source, obj.created_at = row.pk, row.tag, row.source, row.created_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: CustomerTag) -> None:
        untag_customer(customer=obj.customer, tag_name=obj.tag.name)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CustomerTag]) -> None:
        for row in queryset.select_related("customer", "tag"):
            untag_customer(customer=row.customer, tag_name=row.tag.name)


# --- Contact points ----------------------------------------------------------------------


@admin.register(ContactPoint)
class ContactPointAdmin(admin.ModelAdmin):
    form = ContactPointForm
    autocomplete_fields = ["customer"]
    list_display = ["customer", "channel", "address_excerpt", "is_valid", "updated_at"]
    list_filter = ["channel", "is_valid"]
    search_fields = ["customer__email", "address"]
    list_select_related = ["customer"]
    ordering = ["-updated_at", "-id"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="Address")
    def address_excerpt(self, point: ContactPoint) -> SafeString:
        return short(point.address, 60)

    def save_model(self, request: HttpRequest, obj: ContactPoint, form: Any, change: bool) -> None:
        now = timezone.now()
        if not change:
            obj.created_at = now
        obj.updated_at = now
        super().save_model(request, obj, form, change)
