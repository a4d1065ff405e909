"""The orders room's signals, turned into flow runs (connected in FlowsConfig.ready())."""

from __future__ import annotations

from typing import Any

from flows import clock, engine
from flows.events import FlowEvent
from flows.models import TriggerKind
from orders import signals


def on_order_created(sender: Any, order: Any, event_id: str, occurred_at: Any, **kwargs: Any) -> None:
    now = clock.now()
    engine.start_runs(
        event=FlowEvent(TriggerKind.NEW_ORDER, event_id, occurred_at, order.customer, order, order.shop), now=now
    )
    if order.customer_id:
        engine.exit_runs_on_order(customer_id=order.customer_id, order_id=order.pk, placed_at=order.placed_at, now=now)


def on_status_changed(sender: Any, order: Any, old: str | None, new: str, event_id: str, occurred_at: Any, **kw: Any) -> None:
    engine.start_runs(
        event=FlowEvent(
            TriggerKind.ORDER_STATUS_CHANGED, event_id, occurred_at, order.customer, order, order.shop, old, new
        ),
        now=clock.now(),
    )


def on_customer_created(sender: Any, customer: Any, shop: Any, event_id: str, occurred_at: Any, **kw: Any) -> None:
    engine.start_runs(
        event=FlowEvent(TriggerKind.NEW_CUSTOMER, event_id, occurred_at, customer, None, shop), now=clock.now()
    )


def on_customer_registered(sender: Any, customer: Any, shop: Any, event_id: str, occurred_at: Any, **kw: Any) -> None:
    engine.start_runs(
        event=FlowEvent(TriggerKind.CUSTOMER_REGISTERED, event_id, occurred_at, customer, None, shop), now=clock.now()
    )


def on_product_viewed(sender: Any, view: Any, event_id: str, occurred_at: Any, **kw: Any) -> None:
    engine.start_runs(
        event=FlowEvent(
            TriggerKind.PRODUCT_VIEWED, event_id, occurred_at, view.customer, None, view.product.shop, product_id=view.product_id
        ),
        now=clock.now(),
    )


def connect() -> None:
    signals.order_created.connect(on_order_created, dispatch_uid="flows.order_created")
    signals.order_status_changed.connect(on_status_changed, dispatch_uid="flows.order_status_changed")
    signals.customer_created.connect(on_customer_created, dispatch_uid="flows.customer_created")
    signals.customer_registered.connect(on_customer_registered, dispatch_uid="flows.customer_registered")
    signals.product_viewed.connect(on_product_viewed, dispatch_uid="flows.product_viewed")
