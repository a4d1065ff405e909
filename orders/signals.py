"""What ``orders`` tells the rooms above it. Sent inside the processing transaction, so
a receiver's writes (a flow run) commit or roll back with the order.

Every signal carries ``event_id`` (stable across replays of the same delivery, so an
"every time" flow keys on it) and ``occurred_at`` (when it happened at the shop).
"""

from __future__ import annotations

from django.dispatch import Signal

# customer, shop, event_id, occurred_at
customer_created = Signal()
# customer, shop, event_id, occurred_at
customer_registered = Signal()
# customer, shop, consent ({"email": bool|None, "sms": bool|None}), event_id, occurred_at
customer_updated = Signal()
# order, event_id, occurred_at
order_created = Signal()
# order, old (None on creation), new, change (OrderStatusChange), event_id, occurred_at
order_status_changed = Signal()
# view (ProductView), event_id, occurred_at
product_viewed = Signal()
