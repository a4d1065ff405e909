from __future__ import annotations

import zoneinfo

from django.db import models
from django.db.models import Q


class Customer(models.Model):
    """A person, brand-wide. Each shop knows them by its own id (``CustomerIdentity``).

    Contact fields are normalised (email lowercased, phone in E.164). What the shop sent
    is kept raw beside them; a value we could not read leaves the normalised field empty
    and the contact marked invalid, so nothing is guessed and nothing is lost.
    """

    email = models.CharField(max_length=254, blank=True, db_index=True)
    email_raw = models.CharField(max_length=320, blank=True)
    email_valid = models.BooleanField(default=False)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164")
    phone_raw = models.CharField(max_length=64, blank=True)
    phone_valid = models.BooleanField(default=False)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=35, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    timezone_raw = models.CharField(max_length=64, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True, help_text="When they created an account, if they did.")
    # Consent as the shop reports it: None means the shop never said.
    accepts_email_marketing = models.BooleanField(null=True, blank=True)
    accepts_sms_marketing = models.BooleanField(null=True, blank=True)
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The shop's own modification time of the newest update applied."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # A new identity joins the customer with the same email, or the same phone when
            # neither has an email; these make concurrent first sightings converge on one row.
            models.UniqueConstraint(fields=["email"], condition=~Q(email=""), name="customer_unique_email"),
            models.UniqueConstraint(
                fields=["phone"], condition=Q(email="") & ~Q(phone=""), name="customer_unique_phone_without_email"
            ),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        contact = self.email or self.phone or self.email_raw or self.phone_raw or f"#{self.pk}"
        return f"{name} <{contact}>" if name else contact

    @property
    def zone(self) -> zoneinfo.ZoneInfo | None:
        """The customer's own time zone, when we know a valid one."""
        if not self.timezone:
            return None
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return None


class CustomerIdentity(models.Model):
    """How one shop knows a customer: its own customer id."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    shop = models.ForeignKey("orders.Shop", on_delete=models.CASCADE, related_name="identities")
    external_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["shop", "external_id"], name="identity_unique_per_shop")]
        verbose_name_plural = "customer identities"

    def __str__(self) -> str:
        return f"{self.shop.slug}:{self.external_id}"
