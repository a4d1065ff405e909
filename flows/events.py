"""The events flows start from, built from the orders room's signals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orders.models import Customer, Order, Shop


@dataclass(frozen=True)
class FlowEvent:
    trigger: str
    event_id: str
    occurred_at: datetime
    customer: Customer | None
    order: Order | None = None
    shop: Shop | None = None
    old_status: str | None = None
    new_status: str | None = None
    product_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat(),
            "order_id": self.order.pk if self.order else None,
            # The order's status when the event happened; a condition may ask for it
            # rather than the current one (a fast fulfilment can overtake the run).
            "order_status": self.new_status or (self.order.status if self.order else None),
            "shop": self.shop.slug if self.shop else None,
            "old_status": self.old_status,
            "new_status": self.new_status,
            "product_id": self.product_id,
        }
