"""The canonical order statuses and each platform's default map from raw to canonical.

Flows speak only canonical statuses. Each platform's raw status is kept beside it on
the order, and the maps below are loaded into ``StatusMapping`` rows by a migration so
staff can change them in the admin. A raw status that no row maps becomes
``unknown``: never dropped, listed first in the admin for someone to map.
"""

from __future__ import annotations

import itertools

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (awaiting payment)"
    CONFIRMED = "confirmed", "Confirmed"
    PAID = "paid", "Paid"
    PROCESSING = "processing", "Processing"
    ON_HOLD = "on_hold", "On hold"
    BACKORDERED = "backordered", "Backordered"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    SHIPPED = "shipped", "Shipped"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERED = "delivered", "Delivered"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    RETURNED = "returned", "Returned"
    FAILED = "failed", "Payment failed"
    DISPUTED = "disputed", "Disputed"
    UNKNOWN = "unknown", "Unknown (not mapped)"


S = OrderStatus

# --- Shopify ------------------------------------------------------------------
# Shopify has no single status: an order has a financial status, a fulfillment status
# and may be cancelled; a fulfillment carries a shipment status from the carrier.
# Our raw status joins them: "paid/fulfilled", "paid/fulfilled/delivered",
# "cancelled:refunded/unfulfilled".
SHOPIFY_FINANCIAL = [
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
    "expired",
]
SHOPIFY_FULFILLMENT = ["unfulfilled", "partial", "fulfilled", "restocked"]
SHOPIFY_SHIPMENT = {
    "label_printed": S.PROCESSING,
    "label_purchased": S.PROCESSING,
    "confirmed": S.SHIPPED,
    "in_transit": S.SHIPPED,
    "ready_for_pickup": S.OUT_FOR_DELIVERY,
    "out_for_delivery": S.OUT_FOR_DELIVERY,
    "attempted_delivery": S.OUT_FOR_DELIVERY,
    "delivered": S.DELIVERED,
    "failure": S.ON_HOLD,
}
_SHOPIFY_FINANCIAL_ONLY = {
    "pending": S.PENDING,
    "authorized": S.CONFIRMED,
    "partially_paid": S.CONFIRMED,
    "paid": S.PAID,
    "partially_refunded": S.PARTIALLY_REFUNDED,
    "refunded": S.REFUNDED,
    "voided": S.CANCELLED,
    "expired": S.FAILED,
}


def _shopify_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for financial, fulfillment in itertools.product(SHOPIFY_FINANCIAL, SHOPIFY_FULFILLMENT):
        base = f"{financial}/{fulfillment}"
        status = _SHOPIFY_FINANCIAL_ONLY[financial]
        # Refunds and voids say more than fulfilment; otherwise fulfilment moves the order on.
        if financial in {"paid", "authorized", "partially_paid", "pending"}:
            if fulfillment == "fulfilled":
                status = S.SHIPPED
            elif fulfillment == "partial":
                status = S.PARTIALLY_SHIPPED
            elif fulfillment == "restocked":
                status = S.RETURNED
        mapping[base] = status
        cancelled = S.REFUNDED if financial == "refunded" else S.CANCELLED
        mapping[f"cancelled:{base}"] = cancelled
        if fulfillment in {"fulfilled", "partial"} and financial not in {"refunded", "voided"}:
            for shipment, shipped_status in SHOPIFY_SHIPMENT.items():
                mapping[f"{base}/{shipment}"] = (
                    shipped_status
                    if fulfillment == "fulfilled" or shipped_status != S.DELIVERED
                    else S.PARTIALLY_SHIPPED
                )
    return mapping


# --- WooCommerce: order statuses of WooCommerce core ---------------------------
WOOCOMMERCE = {
    "pending": S.PENDING,
    "processing": S.PAID,
    "on-hold": S.ON_HOLD,
    "completed": S.COMPLETED,
    "cancelled": S.CANCELLED,
    "refunded": S.REFUNDED,
    "failed": S.FAILED,
    "checkout-draft": S.PENDING,
    "trash": S.CANCELLED,
}

# --- BigCommerce: the status names of the v2 Orders API (status_id 0-14) -------
BIGCOMMERCE = {
    "Incomplete": S.PENDING,
    "Pending": S.PENDING,
    "Shipped": S.SHIPPED,
    "Partially Shipped": S.PARTIALLY_SHIPPED,
    "Refunded": S.REFUNDED,
    "Cancelled": S.CANCELLED,
    "Declined": S.FAILED,
    "Awaiting Payment": S.PENDING,
    "Awaiting Pickup": S.OUT_FOR_DELIVERY,
    "Awaiting Shipment": S.PROCESSING,
    "Completed": S.COMPLETED,
    "Awaiting Fulfillment": S.PAID,
    "Manual Verification Required": S.ON_HOLD,
    "Disputed": S.DISPUTED,
    "Partially Refunded": S.PARTIALLY_REFUNDED,
}

# --- Magento 2: default order statuses (status codes, not state names) ---------
MAGENTO = {
    "pending": S.PENDING,
    "pending_payment": S.PENDING,
    "payment_review": S.ON_HOLD,
    "fraud": S.ON_HOLD,
    "processing": S.PAID,
    "holded": S.ON_HOLD,
    "complete": S.SHIPPED,
    "closed": S.REFUNDED,
    "canceled": S.CANCELLED,
    "pending_paypal": S.PENDING,
    "paypal_reversed": S.DISPUTED,
    "paypal_canceled_reversal": S.PAID,
}

# --- 3dcart (Shift4Shop): default order statuses --------------------------------
THREEDCART = {
    "New": S.CONFIRMED,
    "Processing": S.PROCESSING,
    "Partial": S.PARTIALLY_SHIPPED,
    "Shipped": S.SHIPPED,
    "Cancel": S.CANCELLED,
    "Hold": S.ON_HOLD,
    "Unpaid": S.PENDING,
}

# --- Volusion: the 17 order statuses -------------------------------------------
VOLUSION = {
    "New": S.CONFIRMED,
    "Pending": S.PENDING,
    "Processing": S.PROCESSING,
    "Payment Declined": S.FAILED,
    "Awaiting Payment": S.PENDING,
    "Ready to Ship": S.PROCESSING,
    "Pending Shipment": S.PROCESSING,
    "Partially Shipped": S.PARTIALLY_SHIPPED,
    "Shipped": S.SHIPPED,
    "Partially Backordered": S.BACKORDERED,
    "Backordered": S.BACKORDERED,
    "See Line Items": S.PROCESSING,
    "See Order Notes": S.ON_HOLD,
    "Partially Returned": S.PARTIALLY_REFUNDED,
    "Returned": S.RETURNED,
    "Cancel Order": S.CANCELLED,
    "Cancelled": S.CANCELLED,
}

# --- Custom back-ends: they send canonical names themselves ----------------------
CUSTOM = {status.value: status for status in OrderStatus if status != S.UNKNOWN}


def default_status_maps() -> dict[str, dict[str, str]]:
    """Platform -> raw status -> canonical status, the defaults the migration loads."""
    return {
        "shopify": _shopify_map(),
        "woocommerce": dict(WOOCOMMERCE),
        "bigcommerce": dict(BIGCOMMERCE),
        "magento": dict(MAGENTO),
        "threedcart": dict(THREEDCART),
        "volusion": dict(VOLUSION),
        "custom": dict(CUSTOM),
    }
