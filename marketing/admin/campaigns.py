"""The campaign editor: settings and variants, a live preview, test sends, activation,
and what the campaign did (per variant, the control group, the blocked sends)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from channels.kinds import ChannelKind
from marketing.actions import archive_campaign, send_test_message
from marketing.admin import stats
from marketing.admin.common import badge, changelist_url, page_context, posted, plural
from marketing.admin.preview import render_preview
from marketing.compliance import ERROR, Problem, activate_campaign, check_campaign
from marketing.forms import AcceptWarningsForm, CampaignForm, PreviewForm, SendTestForm, StarterForm, VariantForm
from marketing.models import Campaign, CampaignVariant, Conversion, Send
from marketing.models.campaigns import Profile
from marketing.models.sends import Decision
from marketing.rendering import TemplateProblem
from marketing.starters import SCENARIOS, STARTERS, create_campaign_from_starter
from orders.models import Customer, Order

# Which variant fields each channel uses; the rest are hidden from its editor.
EMAIL_FIELDS = ["subject", "preheader", "html_body", "text_body"]
PUSH_FIELDS = ["title", "text_body", "link", "image_url"]
WHATSAPP_FIELDS = ["text_body", "template_name", "template_language", "template_parameters"]
CHAT_FIELDS = ["text_body", "link", "image_url"]
CHANNEL_FIELDS = {
    ChannelKind.EMAIL: EMAIL_FIELDS,
    ChannelKind.SMS: ["text_body"],
    ChannelKind.WHATSAPP: WHATSAPP_FIELDS,
    ChannelKind.MOBILE_PUSH: PUSH_FIELDS,
    ChannelKind.WEB_PUSH: PUSH_FIELDS,
}
ALL_CONTENT = [*EMAIL_FIELDS, "title", "link", "image_url", "template_name", "template_language", "template_parameters"]
RECENT_ORDERS = 10
VIEW_CUSTOMERS = "orders.view_customer"


def _count(queryset: QuerySet[Any], outer: str = "campaign") -> Coalesce:
    """A count per campaign as a subquery: joins to sends, variants and conversions at
    once would multiply each other's rows."""
    counted = queryset.filter(**{outer: OuterRef("pk")}).order_by().values(outer).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted[:1]), 0)


class CampaignChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Revenue per currency for the whole page in one query.
        revenue = stats.revenue_for([campaign.pk for campaign in self.result_list])
        for campaign in self.result_list:
            campaign.revenue_rows = revenue.get(campaign.pk, [])


class ProfileFilter(admin.SimpleListFilter):
    title = "profile"
    parameter_name = "profile"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, value.capitalize()) for value in Profile.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
        return queryset.filter(profile=self.value()) if self.value() in Profile.values else queryset


class VariantInline(admin.StackedInline):
    model = CampaignVariant
    form = VariantForm
    extra = 0
    verbose_name = "variant"
    verbose_name_plural = "variants (A/B): each customer always gets the same one, in proportion to the weights"

    def get_extra(self, request: HttpRequest, obj: Campaign | None = None, **kwargs: Any) -> int:
        return 0 if obj is not None and obj.variants.exists() else 1

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        if obj is None:
            return [(None, {"fields": [("name", "weight"), *ALL_CONTENT]})]
        note = f"The fields {obj.get_channel_display()} uses. After changing the channel, save to see its fields."
        return [(None, {"fields": [("name", "weight"), *CHANNEL_FIELDS.get(obj.channel, CHAT_FIELDS)], "description": note})]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    inlines = [VariantInline]
    list_display = ["name", "channel", "profile_short", "status_badge", "variant_count", "sent", "blocked"]
    list_display += ["conversions", "revenue"]
    list_filter = ["channel", ProfileFilter, "status"]
    search_fields = ["name"]
    readonly_fields = ["status_badge", "promo_warning_accepted", "starter", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", ("channel", "alias"), "profile", "status_badge", "starter"]}),
        ("Sender", {"fields": ["sender_name", "sender_address", "reply_to"]}),
        ("Audience and limits", {"fields": ["control_percent", "promo_pool", ("cap_policy", "defer_expiry_hours")]}),
        ("Record", {"fields": ["promo_warning_accepted", ("created_at", "updated_at")]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                variants_n=_count(CampaignVariant.objects.all()),
                sent_n=_count(Send.objects.filter(decision=Decision.SENT)),
                blocked_n=_count(Send.objects.filter(decision=Decision.BLOCKED)),
                conversions_n=_count(Conversion.objects.all(), "send__campaign"),
            )
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CampaignChangeList

    # --- columns ---
    @admin.display(description="Status", ordering="status")
    def status_badge(self, campaign: Campaign) -> SafeString:
        return badge(campaign.status, campaign.get_status_display())

    @admin.display(description="Profile", ordering="profile")
    def profile_short(self, campaign: Campaign) -> str:
        return campaign.profile.capitalize()

    @admin.display(description="Variants", ordering="variants_n")
    def variant_count(self, campaign: Campaign) -> int:
        return campaign.variants_n  # type: ignore[attr-defined]

    @admin.display(description="Sent", ordering="sent_n")
    def sent(self, campaign: Campaign) -> int:
        return campaign.sent_n  # type: ignore[attr-defined]

    @admin.display(description="Blocked", ordering="blocked_n")
    def blocked(self, campaign: Campaign) -> SafeString | int:
        count = campaign.blocked_n  # type: ignore[attr-defined]
        if not count:
            return 0
        url = changelist_url(Send, campaign__id__exact=campaign.pk, decision__exact=Decision.BLOCKED)
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="Conversions", ordering="conversions_n")
    def conversions(self, campaign: Campaign) -> int:
        return campaign.conversions_n  # type: ignore[attr-defined]

    @admin.display(description="Revenue")
    def revenue(self, campaign: Campaign) -> str:
        rows = getattr(campaign, "revenue_rows", None)
        if rows is None:
            rows = stats.revenue_for([campaign.pk]).get(campaign.pk, [])
        return stats.money_list(rows) or "-"

    # --- pages ---
    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("starters/", view(self.starters_view), name="marketing_campaign_starters"),
            path("<int:campaign_id>/preview/", view(self.preview_view), name="marketing_campaign_preview"),
            path("<int:campaign_id>/send-test/", view(self.send_test_view), name="marketing_campaign_send_test"),
            path("<int:campaign_id>/activate/", view(require_POST(self.activate_view)), name="marketing_campaign_activate"),
            path("<int:campaign_id>/activate/confirm/", view(self.confirm_view), name="marketing_campaign_confirm"),
            path("<int:campaign_id>/archive/", view(require_POST(self.archive_view)), name="marketing_campaign_archive"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        campaign = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if campaign is not None:
            context.update(self._dashboard(request, campaign))
        return super().change_view(request, object_id, form_url, context)

    def _dashboard(self, request: HttpRequest, campaign: Campaign) -> dict[str, Any]:
        sends = {"campaign__id__exact": campaign.pk, "decision__exact": Decision.BLOCKED}
        return {
            "problems": check_campaign(campaign),
            "variant_rows": stats.variant_rows(campaign),
            "lift": stats.lift(campaign),
            "blocked_summary": [
                (words, count, changelist_url(Send, **sends, reason__exact=reason))
                for reason, words, count in stats.blocked_summary(campaign)
            ],
            "recent_blocked": stats.recent_blocked(campaign),
            "blocked_url": changelist_url(Send, **sends),
            "sends_url": changelist_url(Send, campaign__id__exact=campaign.pk),
            "preview_form": PreviewForm(prefix="preview"),
            "test_form": SendTestForm(campaign=campaign, prefix="test", initial={"address": request.user.email}),
            "can_operate": self.has_change_permission(request, campaign),
            "can_preview": request.user.has_perm(VIEW_CUSTOMERS),
        }

    def _campaign(self, request: HttpRequest, campaign_id: int, *, change: bool, customers: bool = False) -> Campaign:
        """The campaign, if the user may see it (``change``: edit it). ``customers``: the
        page shows a customer's data (a preview, a test rendered for them), which needs
        the permission to view customers as well."""
        campaign = Campaign.objects.select_related("promo_pool").filter(pk=campaign_id).first()
        if campaign is None:
            raise Http404("No such campaign.")
        allowed = self.has_change_permission(request, campaign) if change else self.has_view_permission(request, campaign)
        if not allowed or (customers and not request.user.has_perm(VIEW_CUSTOMERS)):
            raise PermissionDenied
        return campaign

    def _back(self, campaign: Campaign) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:marketing_campaign_change", args=[campaign.pk]))

    # --- starters ---
    def starters_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StarterForm(*posted(request))
        if request.method == "POST" and form.is_valid():
            scenario, channel = form.cleaned_data["starter"].split("/")
            campaign = create_campaign_from_starter(
                scenario=scenario, channel=channel, name=form.cleaned_data["name"] or None, shop=form.cleaned_data["shop"]
            )
            self.log_addition(request, campaign, [{"added": {}}])
            note = f"Created {campaign.name} from the starter, as a draft. Preview it on a real customer, then activate it."
            self.message_user(request, note, messages.SUCCESS)
            return self._back(campaign)
        channels = sorted({channel for options in STARTERS.values() for channel in options}, key=ChannelKind.values.index)
        table = [
            (SCENARIOS[scenario], [_cell(scenario, channel, options) for channel in channels])
            for scenario, options in STARTERS.items()
        ]
        context = page_context(self, request, "New campaign from a starter", form=form, table=table)
        context["channels"] = [ChannelKind(channel).label for channel in channels]
        return TemplateResponse(request, "admin/marketing/campaign/starters.html", context)

    # --- preview and test sends ---
    def preview_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign(request, campaign_id, change=False, customers=True)
        # Rendering templates the user typed is editing; a viewer previews what is saved.
        edits = request.method == "POST" and self.has_change_permission(request, campaign)
        source = request.POST if request.method == "POST" else request.GET
        asked = any(key.startswith("preview-") for key in source)
        form = PreviewForm(source if asked else None, prefix="preview")
        preview = customer = None
        if asked and form.is_valid() and form.cleaned_data["customer_obj"] is not None:
            customer = form.cleaned_data["customer_obj"]
            preview = render_preview(
                campaign=campaign,
                customer=customer,
                order=form.cleaned_data["order_obj"],
                now=timezone.now(),
                posted=request.POST if edits else None,
            )
        context = page_context(self, request, f"Preview of {campaign.name}", campaign=campaign, form=form)
        context.update(preview=preview, orders=_recent_orders(customer), suggestions=[] if customer else _suggestions())
        fragment = request.GET.get("fragment") == "1" or request.headers.get("x-requested-with") == "XMLHttpRequest"
        template = "preview_fragment.html" if fragment else "preview.html"
        return TemplateResponse(request, f"admin/marketing/campaign/{template}", context)

    def send_test_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign(request, campaign_id, change=True, customers=True)
        form = SendTestForm(*posted(request), campaign=campaign, prefix="test")
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                message = send_test_message(
                    campaign=campaign,
                    variant=data["variant"],
                    customer=data["customer_obj"],
                    order=data["order_obj"],
                    address=data["address"],
                    now=timezone.now(),
                    requested_by=request.user.get_username(),
                )
            except TemplateProblem as problem:
                form.add_error(None, f"The test was not sent: variant {data['variant'].name} does not render. {problem}")
            except (ImproperlyConfigured, ValueError) as exc:
                form.add_error(None, f"The test was not sent: {exc}")
            else:
                url = reverse("admin:channels_message_change", args=[message.pk])
                note = 'Test of variant {} queued to {} as <a href="{}">message #{}</a>; its page shows how it went.'
                self.message_user(request, format_html(note, data["variant"].name, message.address, url, message.pk))
                return self._back(campaign)
        context = page_context(self, request, f"Send a test of {campaign.name}", form=form, submit="Send the test")
        context["intro"] = (
            "The test is rendered for the customer you choose (their name, order and links) and sent to the address "
            'you give, with "[TEST]" before the subject. It writes no send record and issues no promo code.'
        )
        return TemplateResponse(request, "admin/marketing/form_page.html", {**context, "original": campaign})

    # --- status ---
    def activate_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign(request, campaign_id, change=True)
        refused = activate_campaign(campaign=campaign)
        if not refused:
            self.log_change(request, campaign, "Activated.")
            self.message_user(request, f"{campaign.name} is active.", messages.SUCCESS)
            return self._back(campaign)
        if any(problem.level == ERROR for problem in refused):
            self._refusal(request, campaign, refused)
            return self._back(campaign)
        return HttpResponseRedirect(reverse("admin:marketing_campaign_confirm", args=[campaign.pk]))

    def confirm_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign(request, campaign_id, change=True)
        problems = check_campaign(campaign)
        if any(problem.level == ERROR for problem in problems):
            self._refusal(request, campaign, problems)
            return self._back(campaign)
        if not problems and request.method == "GET":
            self.message_user(request, "The check finds no warning to accept: use Activate.", messages.INFO)
            return self._back(campaign)
        form = AcceptWarningsForm(*posted(request), warnings=[problem.message for problem in problems])
        if request.method == "POST" and form.is_valid():
            refused = activate_campaign(campaign=campaign, accept_warnings=True)
            if refused:
                self._refusal(request, campaign, refused)
                return self._back(campaign)
            accepted = " ".join(problem.message for problem in problems)
            self.log_change(request, campaign, f"Activated, accepting the warnings: {accepted}"[:1000])
            self.message_user(request, f"{campaign.name} is active; you accepted {plural(len(problems), 'warning')}.")
            return self._back(campaign)
        context = page_context(self, request, f"Activate {campaign.name}?", form=form, warnings=problems)
        return TemplateResponse(request, "admin/marketing/campaign/confirm.html", {**context, "original": campaign})

    def _refusal(self, request: HttpRequest, campaign: Campaign, problems: list[Problem]) -> None:
        errors = sum(1 for problem in problems if problem.level == ERROR)
        self.message_user(request, f"{campaign.name} was not activated: {plural(errors, 'problem')} to fix first.", messages.ERROR)
        for problem in problems:
            self.message_user(request, problem.message, messages.ERROR if problem.level == ERROR else messages.WARNING)

    def archive_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = self._campaign(request, campaign_id, change=True)
        if archive_campaign(campaign=campaign):
            self.log_change(request, campaign, "Archived.")
            note = f"{campaign.name} is archived: sends of it are now blocked. Activate it to use it again."
            self.message_user(request, note, messages.SUCCESS)
        else:
            self.message_user(request, f"{campaign.name} was archived already.", messages.WARNING)
        return self._back(campaign)


def _cell(scenario: str, channel: str, options: dict[str, Any]) -> tuple[str, str]:
    """A radio button's value and its label for the starters table, or blanks."""
    if channel not in options:
        return "", ""
    return f"{scenario}/{channel}", f"{SCENARIOS[scenario]}, {ChannelKind(channel).label}"


def _recent_orders(customer: Customer | None) -> list[Order]:
    if customer is None:
        return []
    return list(Order.objects.filter(customer=customer).select_related("shop").order_by("-placed_at")[:RECENT_ORDERS])


def _suggestions() -> list[Customer]:
    """A few customers with recent orders, to preview with one click."""
    seen: dict[int, Customer] = {}
    for order in Order.objects.filter(customer__isnull=False).select_related("customer").order_by("-placed_at")[:30]:
        seen.setdefault(order.customer_id, order.customer)
        if len(seen) == 5:
            break
    return list(seen.values())
