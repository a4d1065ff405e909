"""Promo code pools: how many codes are left, and filling a pool (a CSV import or
generated codes). Codes are handed out by sends only (``marketing.promo.issue_code``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from marketing.admin.common import ReadOnlyAdmin, changelist_url, page_context, posted, plural
from marketing.forms import GenerateCodesForm, PromoImportForm
from marketing.models import PromoCode, PromoPool
from marketing.promo import generate_codes, import_codes_csv


@admin.register(PromoPool)
class PromoPoolAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "pattern", "free_codes", "issued_codes", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["free_codes", "issued_codes", "created_at"]
    fields = ["name", "slug", "pattern", "free_codes", "issued_codes", "created_at"]
    ordering = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromoPool]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                free_n=Count("codes", filter=Q(codes__issued_at__isnull=True)),
                issued_n=Count("codes", filter=Q(codes__issued_at__isnull=False)),
            )
        )

    @admin.display(description="Free codes", ordering="free_n")
    def free_codes(self, pool: PromoPool) -> SafeString | int:
        free = getattr(pool, "free_n", 0)
        url = changelist_url(PromoCode, pool__id__exact=pool.pk, issued="no")
        return format_html('<a href="{}">{}</a>', url, free) if pool.pk else 0

    @admin.display(description="Issued codes", ordering="issued_n")
    def issued_codes(self, pool: PromoPool) -> SafeString | int:
        issued = getattr(pool, "issued_n", 0)
        url = changelist_url(PromoCode, pool__id__exact=pool.pk, issued="yes")
        return format_html('<a href="{}">{}</a>', url, issued) if pool.pk else 0

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_fill": self.has_change_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pool_id>/import/", view(self.import_view), name="marketing_promopool_import"),
            path("<int:pool_id>/generate/", view(self.generate_view), name="marketing_promopool_generate"),
            *super().get_urls(),
        ]

    def _pool(self, request: HttpRequest, pool_id: int) -> PromoPool:
        pool = PromoPool.objects.filter(pk=pool_id).first()
        if pool is None:
            raise Http404("No such promo pool.")
        if not self.has_change_permission(request, pool):
            raise PermissionDenied
        return pool

    def _back(self, pool: PromoPool) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:marketing_promopool_change", args=[pool.pk]))

    def import_view(self, request: HttpRequest, pool_id: int) -> HttpResponse:
        pool = self._pool(request, pool_id)
        form = PromoImportForm(*posted(request))
        if request.method == "POST" and form.is_valid():
            raw = form.cleaned_data["file"].read()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                form.add_error("file", "The file is not UTF-8 text; save it as CSV UTF-8 and try again.")
            else:
                report = import_codes_csv(pool=pool, file=text)
                note = f"{pool.name}: {plural(report.added, 'code')} added, {report.duplicates} already in the pool."
                self.message_user(request, note, messages.SUCCESS if not report.problems else messages.WARNING)
                for problem in report.problems:
                    self.message_user(request, problem, messages.ERROR)
                return self._back(pool)
        context = page_context(self, request, f"Import codes into {pool.name}", form=form, submit="Import")
        context["intro"] = "Codes already in the pool are skipped; a send hands each code to one customer only."
        return TemplateResponse(request, "admin/marketing/form_page.html", {**context, "original": pool})

    def generate_view(self, request: HttpRequest, pool_id: int) -> HttpResponse:
        pool = self._pool(request, pool_id)
        form = GenerateCodesForm(*posted(request))
        if request.method == "POST" and form.is_valid():
            try:
                added = generate_codes(pool=pool, count=form.cleaned_data["count"])
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                asked = form.cleaned_data["count"]
                note = f"{pool.name}: {plural(added, 'code')} generated from {pool.pattern}."
                if added < asked:
                    note += f" {asked - added} more would not fit: the pattern has too few free combinations left."
                self.message_user(request, note, messages.SUCCESS if added == asked else messages.WARNING)
                return self._back(pool)
        context = page_context(self, request, f"Generate codes for {pool.name}", form=form, submit="Generate")
        context["intro"] = (
            f"New codes follow the pool's pattern {pool.pattern!r} (# a digit, ? a letter)."
            if pool.pattern
            else "The pool has no pattern yet: set one such as WELCOME-#### on the pool first."
        )
        return TemplateResponse(request, "admin/marketing/form_page.html", {**context, "original": pool})


class IssuedFilter(admin.SimpleListFilter):
    title = "issued"
    parameter_name = "issued"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Issued"), ("no", "Free")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[PromoCode]) -> QuerySet[PromoCode]:
        if self.value() not in ("yes", "no"):
            return queryset
        return queryset.filter(issued_at__isnull=self.value() == "no")


@admin.register(PromoCode)
class PromoCodeAdmin(ReadOnlyAdmin):
    list_display = ["code", "pool", "customer", "issued_at", "send_key"]
    list_filter = [IssuedFilter, "pool"]
    search_fields = ["code", "customer__email", "send_key"]
    list_select_related = ["pool", "customer"]
    ordering = ["pool", "id"]
    show_full_result_count = False
