"""What we say: a campaign in one channel, with one or more weighted variants."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from channels.kinds import ChannelKind


class Profile(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional (reaches every customer with a valid address)"
    MARKETING = "marketing", "Marketing (needs consent; unsubscribe, sender and postal address required)"


class CapPolicy(models.TextChoices):
    DROP = "drop", "Drop the send (blocked: capped)"
    DEFER = "defer", "Defer until the cap frees"


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    alias = models.CharField(
        max_length=60, blank=True, help_text="A CHANNEL_BACKENDS alias; empty means the channel's default."
    )
    profile = models.CharField(max_length=20, choices=Profile.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    sender_name = models.CharField(max_length=200, blank=True)
    sender_address = models.CharField(
        max_length=254, blank=True, help_text="From address (email), sender id (SMS, Viber) or page/bot name."
    )
    reply_to = models.EmailField(blank=True)
    control_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(50)],
        help_text="Percent of customers held out (they receive nothing), to measure lift.",
    )
    promo_pool = models.ForeignKey(
        "marketing.PromoPool", null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    cap_policy = models.CharField(max_length=10, choices=CapPolicy.choices, default=CapPolicy.DROP)
    defer_expiry_hours = models.PositiveIntegerField(
        default=48, help_text="With the defer policy: give up (blocked: expired) after this long."
    )
    promo_warning_accepted = models.BooleanField(
        default=False,
        help_text="A transactional template that carries a promotion: the staff member accepted the warning.",
    )
    starter = models.CharField(max_length=60, blank=True, help_text="The starter template it was made from.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_channel_display()}, {self.profile})"

    @property
    def is_marketing(self) -> bool:
        return self.profile == Profile.MARKETING


class CampaignVariant(models.Model):
    """One version of the content. Fields are Jinja2 templates rendered in a sandbox."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=40, default="A")
    weight = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(0)])
    subject = models.CharField(max_length=500, blank=True, help_text="Email subject.")
    preheader = models.CharField(max_length=300, blank=True)
    html_body = models.TextField(blank=True, help_text="Email HTML.")
    text_body = models.TextField(blank=True, help_text="Email plain text, or the message of SMS and chat channels.")
    title = models.CharField(max_length=200, blank=True, help_text="Push title.")
    link = models.CharField(max_length=1000, blank=True, help_text="Push or chat link (may use template variables).")
    image_url = models.CharField(max_length=1000, blank=True)
    template_name = models.CharField(max_length=200, blank=True, help_text="WhatsApp: approved template name.")
    template_language = models.CharField(max_length=20, blank=True)
    template_parameters = models.JSONField(
        default=list, blank=True, help_text="WhatsApp: body parameters, each a template expression."
    )

    class Meta:
        ordering = ["campaign", "name"]
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="variant_name_unique")]

    def __str__(self) -> str:
        return f"{self.campaign.name} / {self.name}"
