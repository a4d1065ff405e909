"""Rollups kept up to date as orders and views arrive, so recommendations are indexed
reads; and conversions (orders attributed to a send)."""

from __future__ import annotations

from django.db import models


class ProductPopularity(models.Model):
    product = models.ForeignKey("orders.Product", on_delete=models.CASCADE, related_name="popularity")
    day = models.DateField()
    orders = models.PositiveIntegerField(default=0)
    quantity = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    views = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "day"], name="popularity_per_day")]
        indexes = [models.Index(fields=["day", "product"])]


class ProductCoOccurrence(models.Model):
    """How many orders contained both products (stored both ways round)."""

    product = models.ForeignKey("orders.Product", on_delete=models.CASCADE, related_name="+")
    other = models.ForeignKey("orders.Product", on_delete=models.CASCADE, related_name="+")
    orders = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "other"], name="cooccurrence_pair")]
        indexes = [models.Index(fields=["product", "-orders"])]


class Conversion(models.Model):
    class Touch(models.TextChoices):
        SEND = "send", "Sent"
        OPEN = "open", "Opened"
        CLICK = "click", "Clicked"

    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="conversion")
    send = models.ForeignKey("marketing.Send", on_delete=models.CASCADE, related_name="conversions")
    touch = models.CharField(max_length=6, choices=Touch.choices)
    touched_at = models.DateTimeField()
    revenue = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    attributed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["send"])]
