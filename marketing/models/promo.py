from __future__ import annotations

from django.db import models
from django.db.models import Q


class PromoPool(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True, help_text='Used in templates: last_received_promo_code("slug").')
    pattern = models.CharField(
        max_length=100, blank=True, help_text="For generated codes, e.g. WELCOME-#### (# digit, ? letter)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PromoCode(models.Model):
    pool = models.ForeignKey(PromoPool, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=100)
    customer = models.ForeignKey("orders.Customer", null=True, blank=True, on_delete=models.SET_NULL)
    send_key = models.CharField(max_length=300, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pool", "code"], name="promo_code_unique"),
            # At most one code per customer and pool, and one per send key.
            models.UniqueConstraint(
                fields=["pool", "customer"], condition=Q(customer__isnull=False), name="promo_once_per_customer"
            ),
            models.UniqueConstraint(fields=["send_key"], condition=~Q(send_key=""), name="promo_once_per_send"),
        ]
        indexes = [models.Index(fields=["pool"], condition=Q(issued_at__isnull=True), name="promo_free")]

    def __str__(self) -> str:
        return self.code
