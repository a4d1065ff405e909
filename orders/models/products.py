from __future__ import annotations

from django.db import models


class Product(models.Model):
    shop = models.ForeignKey("orders.Shop", on_delete=models.CASCADE, related_name="products")
    external_id = models.CharField(max_length=100)
    sku = models.CharField(max_length=100, blank=True, db_index=True)
    name = models.CharField(max_length=500)
    url = models.URLField(max_length=1000, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["shop", "external_id"], name="product_unique_per_shop")]

    def __str__(self) -> str:
        return self.name


class ProductView(models.Model):
    """A customer looked at a product (sent by the shop's storefront)."""

    customer = models.ForeignKey("orders.Customer", on_delete=models.CASCADE, related_name="product_views")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="views")
    viewed_at = models.DateTimeField()
    delivery = models.ForeignKey("orders.WebhookDelivery", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        indexes = [models.Index(fields=["customer", "-viewed_at"])]
        constraints = [
            # A replayed delivery records the view once.
            models.UniqueConstraint(fields=["customer", "product", "viewed_at"], name="product_view_once"),
        ]
