"""Forms of the marketing admin. They check what staff typed and find the rows it names;
the writes themselves are functions in ``marketing`` (``set_consent``, ``suppress``,
``tag_customer``, ...), called by the admin views."""

from __future__ import annotations

import hashlib
from typing import Any

import phonenumbers
from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

from channels.errors import ChannelError
from channels.kinds import ChannelKind
from channels.registry import backends
from marketing.models import Campaign, CampaignVariant, ContactPoint, CustomerTag, Suppression, Tag
from marketing.models.audience import ConsentStatus, SuppressionReason
from marketing.rendering import TemplateProblem, check_template, parameter_template
from marketing.starters import SCENARIOS, STARTERS
from marketing.suppression import PHONE_CHANNELS, normalise_value
from marketing.tags import normalise_tag
from orders.models import Customer, Order, Shop

# Each template field of a variant: how errors name it, and whether it is HTML.
TEMPLATE_FIELDS = {
    "subject": ("the subject", False),
    "preheader": ("the preheader", False),
    "html_body": ("the HTML body", True),
    "text_body": ("the text", False),
    "title": ("the title", False),
    "link": ("the link", False),
    "image_url": ("the image URL", False),
}
LINE_FIELDS = ("subject", "preheader", "title", "link", "image_url")
# Channels whose address lives on the customer (the shop's mirror), not in a contact point.
CUSTOMER_CHANNELS = frozenset({ChannelKind.EMAIL, ChannelKind.SMS, ChannelKind.WHATSAPP})
MAX_GENERATED = 20_000


def find_customer(text: str) -> Customer | None:
    """The customer ``text`` names: an email address, a phone number with its country
    code, or a customer id."""
    text = text.strip()
    if not text:
        return None
    if "@" in text:
        return Customer.objects.filter(email=text.lower()).first()  # stored lowercased, so the index serves
    if text.isdigit():
        return Customer.objects.filter(pk=int(text)).first()
    phone = _e164(text)
    return Customer.objects.filter(phone=phone).first() if phone else None


def find_order(customer: Customer, *, number: str = "", order_id: int | None = None) -> Order | None:
    """One of ``customer``'s orders, by id or by the number staff see ("#1001", "1001")."""
    orders = Order.objects.filter(customer=customer).select_related("shop")
    if order_id is not None:
        return orders.filter(pk=order_id).first()
    number = number.strip()
    if not number:
        return None
    bare = number.lstrip("#")
    return (
        orders.filter(number__in={number, bare, f"#{bare}"}).order_by("-placed_at").first()
        or orders.filter(external_id=bare).order_by("-placed_at").first()
    )


def _e164(text: str) -> str:
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- Campaigns -----------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        # The status moves only through activate_campaign and archive_campaign.
        exclude = ["status", "promo_warning_accepted", "starter"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        alias, channel = data.get("alias"), data.get("channel")
        if alias and channel:
            try:
                kind = backends.kind_of(alias)
            except ImproperlyConfigured:
                self.add_error("alias", f"No channel backend is configured as {alias!r}; leave it empty for the default.")
            else:
                if kind != channel:
                    label = ChannelKind(kind).label
                    self.add_error("alias", f"{alias!r} sends {label} messages, not {ChannelKind(channel).label}.")
        return data


class VariantForm(forms.ModelForm):
    """A variant of the campaign editor. Templates that cannot be read are refused when
    saving; a variable that does not exist shows in the preview (it depends on the data)."""

    class Meta:
        model = CampaignVariant
        fields = "__all__"
        widgets = {
            **{name: forms.TextInput(attrs={"size": 90, "style": "font-family:monospace"}) for name in LINE_FIELDS},
            "html_body": forms.Textarea(attrs={"rows": 14, "cols": 100, "style": "font-family:monospace"}),
            "text_body": forms.Textarea(attrs={"rows": 8, "cols": 100, "style": "font-family:monospace"}),
            "template_parameters": forms.Textarea(attrs={"rows": 2, "cols": 100, "style": "font-family:monospace"}),
        }

    def clean_template_parameters(self) -> list[str]:
        value = self.cleaned_data.get("template_parameters") or []
        if not isinstance(value, list) or not all(isinstance(item, str | int | float) for item in value):
            raise ValidationError('Write the parameters as a list of expressions, e.g. ["recipient.first_name", "order.number"].')
        for number, parameter in enumerate(value, start=1):
            try:
                check_template(parameter_template(parameter), name=f"WhatsApp parameter {number}")
            except TemplateProblem as problem:
                raise ValidationError(str(problem)) from None
        return [str(item) for item in value]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name, (label, html) in TEMPLATE_FIELDS.items():
            source = data.get(name) or ""
            if not source.strip():
                continue
            try:
                check_template(source, html=html, name=label)
            except TemplateProblem as problem:
                self.add_error(name, str(problem))
        return data


class StarterForm(forms.Form):
    starter = forms.ChoiceField(
        widget=forms.RadioSelect, error_messages={"required": "Choose a starter: a scenario in one channel."}
    )
    name = forms.CharField(max_length=200, required=False, help_text="Empty: the scenario and channel, e.g. \"Welcome (Email)\".")
    shop = forms.ModelChoiceField(
        Shop.objects.order_by("name"),
        required=False,
        help_text="Its name (and, for email, its support address) becomes the sender. You can change them after.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["starter"].choices = [
            (f"{scenario}/{channel}", f"{SCENARIOS[scenario]} ({ChannelKind(channel).label})")
            for scenario, channels in STARTERS.items()
            for channel in channels
        ]
        shops = list(Shop.objects.order_by("pk")[:2])
        if len(shops) == 1:
            self.fields["shop"].initial = shops[0].pk


class AcceptWarningsForm(forms.Form):
    accept = forms.BooleanField(
        label="I have read these warnings and accept them",
        error_messages={"required": "Tick the box to accept the warnings, or go back and change the campaign."},
    )
    # Which warnings the page showed: the campaign may change while it is open, and a
    # warning nobody saw cannot be accepted.
    shown = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, warnings: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.digest = hashlib.sha256("\n".join(warnings).encode()).hexdigest()[:16]
        self.fields["shown"].initial = self.digest

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("shown") != self.digest:
            raise ValidationError("The warnings changed since this page was opened; read them again below.")
        return data


class CustomerOrderForm(forms.Form):
    """A real customer, and optionally one of their orders, to render for."""

    customer = forms.CharField(
        max_length=254, required=False, help_text="Email address, phone number (+ and country code) or customer id."
    )
    order = forms.CharField(max_length=100, required=False, help_text="Optional: one of the customer's order numbers.")
    order_id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    customer_required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        text = data.get("customer") or ""
        data["customer_obj"] = data["order_obj"] = None
        if not text.strip():
            if self.customer_required:
                self.add_error("customer", "Enter the email address of a customer to render the message for.")
            return data
        customer = find_customer(text)
        if customer is None:
            self.add_error("customer", f"No customer has the email address, phone number or id {text.strip()!r}.")
            return data
        data["customer_obj"] = customer
        number, order_id = data.get("order") or "", data.get("order_id")
        if number.strip() or order_id is not None:
            order = find_order(customer, number=number, order_id=order_id)
            if order is None:
                self.add_error("order", f"{customer} has no order {(number.strip() or order_id)!r}.")
            data["order_obj"] = order
        return data


class PreviewForm(CustomerOrderForm):
    pass


class SendTestForm(CustomerOrderForm):
    address = forms.CharField(
        max_length=500, help_text="Where the test goes. It is rendered for the customer below, not for this address."
    )
    variant = forms.ModelChoiceField(CampaignVariant.objects.none(), empty_label=None)
    customer_required = True
    field_order = ["address", "variant", "customer", "order"]

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        self.fields["variant"].queryset = campaign.variants.order_by("name")
        self.fields["address"].help_text = {
            ChannelKind.EMAIL: "The email address the test goes to.",
            ChannelKind.SMS: "The phone number the test goes to, with its country code (+44 7700 900123).",
            ChannelKind.WHATSAPP: "The WhatsApp number the test goes to, with its country code.",
        }.get(campaign.channel, "The address in this channel the test goes to (a chat id, device token, subscription JSON).")

    def clean_address(self) -> str:
        address = self.cleaned_data["address"].strip()
        channel = self.campaign.channel
        if channel == ChannelKind.EMAIL:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address!r} is not an email address.") from None
        elif channel in PHONE_CHANNELS:
            address = _e164(address) or ""
            if not address:
                raise ValidationError("Enter a valid phone number with its country code, such as +44 7700 900123.")
        try:
            alias = self.campaign.alias or backends.default_alias(channel)
            return backends[alias].validate_address(address)
        except ImproperlyConfigured as exc:
            raise ValidationError(f"This campaign's channel cannot send: {exc}") from None
        except ChannelError as exc:
            raise ValidationError(exc.message) from None


# --- Consent, suppression, tags, contact points ----------------------------------------


class ConsentForm(forms.Form):
    customer = forms.CharField(max_length=254, help_text="Email address, phone number (+ and country code) or customer id.")
    channel = forms.ChoiceField(choices=ChannelKind.choices)
    status = forms.ChoiceField(choices=ConsentStatus.choices)
    note = forms.CharField(
        max_length=200, required=False, help_text="Why, for the record (e.g. \"asked by phone on 3 March\")."
    )

    def clean_customer(self) -> Customer:
        text = self.cleaned_data["customer"]
        customer = find_customer(text)
        if customer is None:
            raise ValidationError(f"No customer has the email address, phone number or id {text.strip()!r}.")
        return customer


class SuppressionForm(forms.ModelForm):
    """Adds an entry as the list stores it (``normalise_value``): lowercased email, E.164
    phone number, a web push subscription's endpoint."""

    class Meta:
        model = Suppression
        fields = ["value", "channel", "detail"]
        widgets = {"value": forms.TextInput(attrs={"size": 60})}
        help_texts = {"channel": "Empty: suppressed in every channel."}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        value, channel = (data.get("value") or "").strip(), data.get("channel") or ""
        if not value:
            return data
        problem = _suppression_problem(channel, value)
        if problem:
            self.add_error("value", problem)
            return data
        data["value"] = normalise_value(channel, value)
        existing = Suppression.objects.filter(value=data["value"], channel=channel).first()
        if existing is not None:
            self.add_error("value", f"{data['value']} is already on the list ({existing.get_reason_display().lower()}).")
        return data


def _suppression_problem(channel: str, value: str) -> str:
    if channel == ChannelKind.EMAIL or (not channel and "@" in value):
        lowered = value.lower()
        domain = lowered.removeprefix("*@").removeprefix("*.") if lowered.startswith("*@") else ""
        try:
            validate_email(f"someone@{domain}" if domain else lowered)
        except ValidationError:
            return f"{value!r} is not an email address or a domain pattern like *@example.com."
    elif channel in PHONE_CHANNELS and not _e164(value):
        return f"{value!r} is not a phone number with its country code (+44 7700 900123)."
    return ""


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Columns value, channel, reason (a header row may name them, in any order). An empty channel means "
        "every channel; an empty reason, the one below. UTF-8.",
    )
    reason = forms.ChoiceField(choices=SuppressionReason.choices, initial=SuppressionReason.IMPORT)


class PromoImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text='One code per row, in the first column; a header "code" is skipped. UTF-8.')


class GenerateCodesForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=MAX_GENERATED, initial=100, label="How many codes")


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["name"]

    def clean_name(self) -> str:
        try:
            name = normalise_tag(self.cleaned_data["name"])
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if Tag.objects.filter(name=name).exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"There is already a tag {name!r}.")
        return name


class CustomerTagForm(forms.ModelForm):
    tag_name = forms.CharField(max_length=100, label="Tag", help_text="An existing tag or a new one.")

    class Meta:
        model = CustomerTag
        fields = ["customer"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        customer, name = data.get("customer"), data.get("tag_name")
        if not name:
            return data
        try:
            data["tag_name"] = normalise_tag(name)
        except ValueError as exc:
            self.add_error("tag_name", str(exc))
            return data
        if customer is not None:
            held = CustomerTag.objects.filter(customer=customer, tag__name=data["tag_name"]).first()
            if held is not None:
                self.add_error("tag_name", f"{customer} already has the tag {data['tag_name']!r} (from {held.source}).")
        return data


class ContactPointForm(forms.ModelForm):
    class Meta:
        model = ContactPoint
        fields = ["customer", "channel", "address", "is_valid"]
        widgets = {"address": forms.Textarea(attrs={"rows": 4, "cols": 80, "style": "font-family:monospace"})}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        channel, address = data.get("channel"), (data.get("address") or "").strip()
        if channel in CUSTOMER_CHANNELS:
            self.add_error("channel", "Email addresses and phone numbers come from the shop, on the customer; "
                                      "contact points are for push, chat and messenger addresses.")  # fmt: skip
        elif channel == ChannelKind.WEB_PUSH and address:
            from channels.backends.webpush import subscription_problem

            problem = subscription_problem(address)
            if problem:
                self.add_error("address", f"This web push subscription is unusable: {problem}. Paste the JSON "
                                          'the browser gave (PushSubscription.toJSON(): "endpoint" and "keys").')  # fmt: skip
        if address:
            data["address"] = address
        return data
