from __future__ import annotations

import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class Platform(models.TextChoices):
    """The shop platforms. Several speak the generic webhook protocol through a bridge."""

    SHOPIFY = "shopify", "Shopify"
    WOOCOMMERCE = "woocommerce", "WooCommerce"
    BIGCOMMERCE = "bigcommerce", "BigCommerce"
    MAGENTO = "magento", "Magento 2"
    THREEDCART = "threedcart", "3dcart (Shift4Shop)"
    VOLUSION = "volusion", "Volusion"
    CUSTOM = "custom", "Custom back-end"


# Which webhook protocol (the <platform> part of the URL) each shop platform speaks.
WEBHOOK_PROTOCOL: dict[str, str] = {
    Platform.SHOPIFY: "shopify",
    Platform.WOOCOMMERCE: "woocommerce",
    Platform.BIGCOMMERCE: "bigcommerce",
    Platform.MAGENTO: "magento",
    Platform.THREEDCART: "generic",
    Platform.VOLUSION: "generic",
    Platform.CUSTOM: "generic",
}


WEBHOOK_INSTRUCTIONS: dict[str, str] = {
    Platform.SHOPIFY: "Shopify: in your app's settings create the webhook subscriptions (orders, customers and the "
    "privacy topics) with this URL, and paste the app's client secret as the secret here: Shopify signs every "
    "webhook with it.",
    Platform.WOOCOMMERCE: "WooCommerce: in WordPress open WooCommerce > Settings > Advanced > Webhooks, add one "
    "webhook per topic (Order created, Order updated, Customer created, ...) with this Delivery URL, and the secret "
    "here as its Secret.",
    Platform.BIGCOMMERCE: "BigCommerce: create the webhook subscriptions (store/order/*, store/customer/*) with this "
    "destination and a header X-Herald-Webhook-Secret set to the secret here. BigCommerce does not sign webhooks, "
    "so that header is what proves a request is yours.",
}
GENERIC_INSTRUCTIONS = (
    "{platform}: have the store's bridge POST each event to this URL with a Herald-Signature header "
    '(t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret here); see docs/WEBHOOKS.md.'
)



def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone such as Europe/Berlin.") from None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Shop(models.Model):
    """A storefront of the brand on one platform, and how it reaches us and we reach it."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True, help_text="Part of the webhook URL.")
    platform = models.CharField(max_length=20, choices=Platform.choices)
    webhook_secret = models.CharField(
        max_length=200,
        default=new_secret,
        help_text="Shared secret the platform signs webhooks with (Shopify: the app's client secret).",
    )
    api_url = models.URLField(
        blank=True,
        help_text="WooCommerce: the site URL. BigCommerce: https://api.bigcommerce.com/stores/<store_hash>.",
    )
    api_key = models.CharField(max_length=200, blank=True, help_text="WooCommerce consumer key; BigCommerce access token.")
    api_secret = models.CharField(max_length=200, blank=True, help_text="WooCommerce consumer secret.")
    currency = models.CharField(max_length=3, default="USD")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    country = models.CharField(
        max_length=2, blank=True, help_text="ISO country code, used to read phone numbers written without +country."
    )
    url = models.URLField(blank=True)
    support_email = models.EmailField(blank=True)
    postal_address = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    rejected_count = models.PositiveIntegerField(default=0, editable=False)
    last_rejected_at = models.DateTimeField(null=True, blank=True, editable=False)
    synced_until = models.DateTimeField(
        null=True, blank=True, help_text="WooCommerce catch-up: orders modified up to this time have been pulled."
    )
    last_sync_message = models.CharField(
        max_length=500, blank=True, editable=False, help_text="What the last WooCommerce catch-up did or why it failed."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()})"

    @property
    def webhook_protocol(self) -> str:
        return WEBHOOK_PROTOCOL[self.platform]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    def webhook_path(self) -> str:
        return f"/webhooks/{self.webhook_protocol}/{self.slug}/"

    def webhook_url(self) -> str:
        return settings.HERALD_PUBLIC_URL + self.webhook_path()

    def webhook_instructions(self) -> str:
        """One line telling staff where this shop's webhook URL and secret go on its platform."""
        generic = GENERIC_INSTRUCTIONS.format(platform=self.get_platform_display())
        return WEBHOOK_INSTRUCTIONS.get(self.platform, generic)
