"""The channels room in the admin: the message ledger, its receipts, and a test send.

The ledger is evidence of what Herald told providers and what they answered, so nothing
here edits or deletes it. The few writes staff make (deciding an unknown outcome,
replaying a receipt, sending a test) are functions in ``channels.upkeep`` and
``channels.actions``; this module only asks and reports.

Permissions: viewing uses Django's view permissions. Deciding an unknown outcome needs
``channels.change_message``, replaying a receipt ``channels.change_receipt``, and the test
page ``channels.add_message``: it creates exactly one ledger row, which is what that
permission means, and granting it does not open any edit form (adding through the admin
form stays off).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from channels.actions import send_message
from channels.forms import SendTestMessageForm
from channels.kinds import ChannelKind
from channels.models import DeliveryAttempt, DeliveryEvent, Message, MessageStatus, Receipt, RejectedReceipt
from channels.registry import backends
from channels.upkeep import close_message, replay_receipts, resend_message

# A pretty-printed megabyte in one <pre> makes the page crawl; staff need the start.
DISPLAY_LIMIT = 200_000
STATUS_COLOURS = {
    MessageStatus.QUEUED: "#6b7280",
    MessageStatus.SENDING: "#2563eb",
    MessageStatus.UNKNOWN: "#b45309",
    MessageStatus.SENT: "#0f766e",
    MessageStatus.DELIVERED: "#15803d",
    MessageStatus.FAILED: "#b91c1c",
    MessageStatus.BOUNCED: "#7f1d1d",
}
# Put first in the preview's own document: no script (the sandbox already stops it), no
# remote image or font, so opening a message here never fires its open-tracking pixel.
PREVIEW_POLICY = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
)
PRE = "white-space:pre-wrap;max-height:40em;overflow:auto;margin:0"


def cut(text: str, limit: int = DISPLAY_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)"


def pre(text: str) -> SafeString:
    return format_html('<pre style="{}">{}</pre>', PRE, cut(text))


def pretty_json(value: object) -> SafeString:
    return pre(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def short(text: str, limit: int = 80) -> SafeString:
    """The start of a long value in a list, the whole of it on hover."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return format_html('<span title="{}">{}</span>', text[:2000], shown)


def header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


def describe_body(body: bytes, content_type: str) -> SafeString:
    """A receipt body as staff can read it: pretty JSON, form fields (Twilio and Vonage
    post forms), else text with replacement characters for bytes that are not UTF-8."""
    text = body.decode("utf-8", errors="replace")
    try:
        shown, kind = json.dumps(json.loads(body), indent=2, ensure_ascii=False), "JSON"
    except ValueError:  # includes UnicodeDecodeError
        shown, kind = text, "text"
        if "application/x-www-form-urlencoded" in content_type:
            fields = parse_qsl(text, keep_blank_values=True)
            shown, kind = json.dumps(fields, indent=2, ensure_ascii=False), "form fields (name, value)"
    return format_html("<p>{} bytes, {}</p>{}", f"{len(body):,}", kind, pre(shown))


class LeanChangeList(ChangeList):
    """A list that leaves what the model admin's ``lean()`` defers (bodies, HTML) in the
    database; the change page still reads them in its one query."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        return self.model_admin.lean(queryset)


class LedgerAdmin(admin.ModelAdmin):
    """Read-only, undeletable, with a lean list."""

    show_full_result_count = False  # a second COUNT(*) over the whole ledger on every page

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def lean(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessagePartInline(admin.TabularInline):
    """Attempts and events: shown to whoever may see the message, never edited."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("channels.view_message") or request.user.has_perm("channels.change_message")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(MessagePartInline):
    model = DeliveryAttempt
    verbose_name_plural = "attempts"
    fields = ["number", "started_at", "duration_ms", "outcome", "response_code", "response", "error_text"]
    readonly_fields = fields

    @admin.display(description="Response excerpt")
    def response(self, attempt: DeliveryAttempt) -> SafeString:
        return pre(attempt.response_excerpt) if attempt.response_excerpt else SafeString("-")

    @admin.display(description="Error")
    def error_text(self, attempt: DeliveryAttempt) -> SafeString:
        return pre(attempt.error) if attempt.error else SafeString("-")


class DeliveryEventInline(MessagePartInline):
    model = DeliveryEvent
    verbose_name_plural = "events"
    fields = ["kind", "occurred_at", "provider_event_id", "detail", "raw_json"]
    readonly_fields = fields

    @admin.display(description="Raw")
    def raw_json(self, event: DeliveryEvent) -> SafeString:
        return pretty_json(event.raw) if event.raw else SafeString("-")


class AliasFilter(admin.SimpleListFilter):
    """Configured aliases (with the kind each sends) and any alias that is only in the
    data any more, so old rows of a removed account stay findable."""

    title = "alias"
    parameter_name = "alias"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        configured = backends.aliases()
        seen = set(model_admin.model.objects.order_by().values_list("alias", flat=True).distinct())
        choices = []
        for alias in configured:
            try:
                choices.append((alias, f"{alias} ({ChannelKind(backends.kind_of(alias)).label})"))
            except ImproperlyConfigured:
                choices.append((alias, f"{alias} (misconfigured)"))
        choices += [(alias, f"{alias} (not configured)") for alias in sorted(seen - set(configured))]
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(alias=self.value()) if self.value() else queryset


class DecisionFilter(admin.SimpleListFilter):
    title = "unknown outcome"
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("needed", "Needs a decision"), ("reconciling", "Still being reconciled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() not in ("needed", "reconciling"):
            return queryset
        return queryset.filter(status=MessageStatus.UNKNOWN, needs_decision=self.value() == "needed")


# --- Messages -------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(LedgerAdmin):
    list_display = ["id", "kind", "alias", "to", "status_badge", "attempts", "created_at", "sent_at", "error_excerpt"]
    list_display_links = ["id", "to"]
    list_filter = ["kind", "status", AliasFilter, DecisionFilter]
    search_fields = ["address", "idempotency_key", "provider_message_id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    actions = ["resend_unknown", "close_unknown"]
    inlines = [DeliveryAttemptInline, DeliveryEventInline]
    readonly_fields = ["status_badge", "text_body", "html_source", "html_preview", "pretty_data", "error_full"]
    fieldsets = [
        (None, {"fields": [("kind", "alias"), "address", "status_badge", "idempotency_key", "provider_message_id"]}),
        ("Outcome", {"fields": ["error_full", "error_code", ("attempts", "next_attempt_at", "expires_at")]}),
        ("Unknown outcome", {"fields": [("reconcile_at", "needs_decision")]}),
        ("Content", {"fields": ["subject", "text_body", "html_preview", "html_source", "pretty_data"]}),
        ("Timestamps", {"fields": [("created_at", "sent_at"), ("delivered_at", "failed_at"), ("opened_at", "clicked_at")]}),
    ]

    def lean(self, queryset: QuerySet[Message]) -> QuerySet[Message]:
        return queryset.defer("text", "html", "data")

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.change_message")

    def has_send_test_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.add_message")

    # --- columns and fields ---
    @admin.display(description="Address", ordering="address")
    def to(self, message: Message) -> SafeString:
        return short(message.address, 50)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, message: Message) -> SafeString:
        badge = format_html(
            '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;white-space:nowrap">{}</span>',
            STATUS_COLOURS.get(message.status, "#6b7280"),
            message.get_status_display(),
        )
        if message.status == MessageStatus.UNKNOWN and message.needs_decision:
            return format_html('{} <strong style="color:#b45309">needs a decision</strong>', badge)
        return badge

    @admin.display(description="Error")
    def error_excerpt(self, message: Message) -> SafeString | str:
        return short(message.error) if message.error else ""

    @admin.display(description="Error")
    def error_full(self, message: Message) -> SafeString:
        return pre(message.error) if message.error else SafeString("-")

    @admin.display(description="Text")
    def text_body(self, message: Message) -> SafeString:
        return pre(message.text) if message.text else SafeString("-")

    @admin.display(description="HTML source")
    def html_source(self, message: Message) -> SafeString:
        if not message.html:
            return SafeString("-")
        summary = f"{len(message.html):,} characters (escaped source)"
        return format_html("<details><summary>{}</summary>{}</details>", summary, pre(message.html))

    @admin.display(description="HTML preview")
    def html_preview(self, message: Message) -> SafeString:
        if not message.html:
            return SafeString("No HTML part.")
        # sandbox="" runs no script and gives the document no origin; srcdoc is an
        # attribute, so format_html escapes the whole document into it.
        return format_html(
            '<iframe sandbox="" srcdoc="{}" title="Preview of the HTML part" referrerpolicy="no-referrer" '
            'style="width:100%;max-width:820px;height:36em;border:1px solid #ccc;background:#fff"></iframe>'
            '<div class="help">Scripts do not run and remote images are not loaded, so viewing here is never '
            "counted as an open.</div>",
            PREVIEW_POLICY + cut(message.html),
        )

    @admin.display(description="Data")
    def pretty_data(self, message: Message) -> SafeString:
        return pretty_json(message.data)

    # --- pages ---
    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        waiting = Message.objects.filter(status=MessageStatus.UNKNOWN, needs_decision=True).count()
        context = {**(extra_context or {}), "can_send_test": self.has_send_test_permission(request)}
        context["needs_decision_count"] = waiting
        if waiting:
            context["title"] = f"Messages: {waiting} with an unknown outcome need{'s' if waiting == 1 else ''} a decision"
        return super().changelist_view(request, context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_decide": self.has_decide_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        site = self.admin_site
        return [
            path("send-test/", site.admin_view(self.test_message_view), name="channels_message_test"),
            path("<int:message_id>/resend/", site.admin_view(require_POST(self.resend_one)), name="channels_message_resend"),
            path("<int:message_id>/close/", site.admin_view(require_POST(self.close_one)), name="channels_message_close"),
            *super().get_urls(),
        ]

    # --- deciding an unknown outcome ---
    @admin.action(description="Resend (the provider did not get it)", permissions=["decide"])
    def resend_unknown(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        self._decide(request, queryset, lambda pk: resend_message(message_id=pk), "Queued {} to be sent again.")

    @admin.action(description="Close (do not resend)", permissions=["decide"])
    def close_unknown(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        by = request.user.get_username()
        self._decide(request, queryset, lambda pk: close_message(message_id=pk, by=by), "Closed {} as failed, not resent.")

    def resend_one(self, request: HttpRequest, message_id: int) -> HttpResponse:
        return self._decide_one(request, message_id, self.resend_unknown)

    def close_one(self, request: HttpRequest, message_id: int) -> HttpResponse:
        return self._decide_one(request, message_id, self.close_unknown)

    def _decide_one(self, request: HttpRequest, message_id: int, action: Any) -> HttpResponse:
        if not self.has_decide_permission(request):
            raise PermissionDenied
        message = get_object_or_404(Message.objects.only("pk"), pk=message_id)
        action(request, Message.objects.filter(pk=message.pk))
        return HttpResponseRedirect(reverse("admin:channels_message_change", args=[message.pk]))

    def _decide(self, request: HttpRequest, queryset: QuerySet[Message], decide: Any, done_text: str) -> None:
        requested = queryset.count()
        unknown = list(queryset.filter(status=MessageStatus.UNKNOWN).values_list("pk", flat=True))
        done = sum(1 for pk in unknown if decide(pk))
        if done:
            self.message_user(request, done_text.format(plural(done, "message")), messages.SUCCESS)
        if requested > done:
            left = requested - done
            text = f"{plural(left, 'message')} left as {'it was' if left == 1 else 'they were'}: no unknown outcome to decide."
            self.message_user(request, text, messages.WARNING)

    # --- a test message ---
    def test_message_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_send_test_permission(request):
            raise PermissionDenied
        form = SendTestMessageForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                message = send_message(
                    kind=data["kind"],
                    alias=data["alias"],
                    address=data["address"],
                    idempotency_key=f"test:{uuid.uuid4()}",
                    subject=data["subject"],
                    text=data["text"],
                    data={"test": True, "requested_by": request.user.get_username()},
                )
            except (ValueError, ImproperlyConfigured) as exc:  # settings changed under the form
                form.add_error(None, str(exc))
            else:
                note = f"Test message #{message.pk} queued through {message.alias}. "
                note += "This page shows its attempts and events as they happen."
                self.message_user(request, note, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:channels_message_change", args=[message.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Send a test message",
            "form": form,
            "channels": channel_overview(),
        }
        return TemplateResponse(request, "admin/channels/message/test_message.html", context)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def channel_overview() -> list[dict[str, str]]:
    """Each configured alias, its backend and what the system check says about it."""
    rows = []
    for alias, config in backends.config.items():
        try:
            kind = ChannelKind(backends.kind_of(alias)).label
            problems = "; ".join(backends[alias].check()) or "ok"
        except ImproperlyConfigured as exc:
            kind, problems = "?", str(exc)
        rows.append({"alias": alias, "kind": kind, "backend": str(config.get("BACKEND", "")), "problems": problems})
    return rows


# --- Receipts -------------------------------------------------------------------


@admin.register(Receipt)
class ReceiptAdmin(LedgerAdmin):
    list_display = ["id", "received_at", "alias", "status", "attempts", "size", "outcome"]
    list_filter = ["status", AliasFilter]
    search_fields = ["result", "error"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    actions = ["replay_selected"]
    fields = ["alias", ("status", "attempts"), "error", "result", ("received_at", "enqueued_at", "processed_at")]
    fields += ["query", "pretty_headers", "decoded_body"]
    readonly_fields = ["pretty_headers", "decoded_body"]

    def lean(self, queryset: QuerySet[Receipt]) -> QuerySet[Receipt]:
        return queryset.annotate(body_size=Length("body")).defer("body", "headers")

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("channels.change_receipt")

    @admin.display(description="Bytes", ordering="body_size")
    def size(self, receipt: Receipt) -> int:
        return receipt.body_size  # type: ignore[attr-defined]

    @admin.display(description="Error / result")
    def outcome(self, receipt: Receipt) -> SafeString:
        return short(receipt.error or receipt.result, 100)

    @admin.display(description="Headers")
    def pretty_headers(self, receipt: Receipt) -> SafeString:
        return pretty_json(receipt.headers)

    @admin.display(description="Body")
    def decoded_body(self, receipt: Receipt) -> SafeString:
        return describe_body(bytes(receipt.body), header(receipt.headers, "content-type"))

    @admin.action(description="Replay selected failed receipts", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Receipt]) -> None:
        requested = queryset.count()
        failed = list(queryset.filter(status=Receipt.Status.FAILED).values_list("pk", flat=True))
        replayed = replay_receipts(receipt_ids=failed, now=timezone.now())
        if replayed:
            self.message_user(request, f"Queued {plural(replayed, 'receipt')} to be processed again.", messages.SUCCESS)
        if requested > replayed:
            left = requested - replayed
            text = f"{plural(left, 'receipt')} left as {'it was' if left == 1 else 'they were'}: only failed ones are replayed."
            self.message_user(request, text, messages.WARNING)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        context = {**(extra_context or {}), "can_replay": self.has_replay_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        replay = self.admin_site.admin_view(require_POST(self.replay_one))
        return [path("<int:receipt_id>/replay/", replay, name="channels_receipt_replay"), *super().get_urls()]

    def replay_one(self, request: HttpRequest, receipt_id: int) -> HttpResponse:
        if not self.has_replay_permission(request):
            raise PermissionDenied
        receipt = get_object_or_404(Receipt.objects.only("pk"), pk=receipt_id)
        self.replay_selected(request, Receipt.objects.filter(pk=receipt.pk))
        return HttpResponseRedirect(reverse("admin:channels_receipt_change", args=[receipt.pk]))


@admin.register(RejectedReceipt)
class RejectedReceiptAdmin(LedgerAdmin):
    list_display = ["received_at", "alias", "status_code", "reason", "remote_addr"]
    list_filter = ["status_code", AliasFilter]
    search_fields = ["reason", "remote_addr"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-id"]
    fields = ["received_at", "alias", "status_code", "reason", "remote_addr", "pretty_headers", "body"]
    readonly_fields = ["pretty_headers", "body"]

    def lean(self, queryset: QuerySet[RejectedReceipt]) -> QuerySet[RejectedReceipt]:
        return queryset.defer("headers", "body_excerpt")

    @admin.display(description="Headers")
    def pretty_headers(self, rejected: RejectedReceipt) -> SafeString:
        return pretty_json(rejected.headers)

    @admin.display(description="Body (the first 2 KB)")
    def body(self, rejected: RejectedReceipt) -> SafeString:
        return pre(rejected.body_excerpt) if rejected.body_excerpt else SafeString("-")
