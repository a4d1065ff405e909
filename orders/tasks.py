from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from orders import actions


@shared_task(name="orders.process_delivery_task")
def process_delivery_task(delivery_id: int) -> str:
    return actions.process_delivery(delivery_id=delivery_id)


@shared_task(name="orders.sync_woocommerce_task")
def sync_woocommerce_task(shop_id: int) -> str:
    from orders.catchup import sync_woocommerce

    return sync_woocommerce(shop_id=shop_id, now=timezone.now())


@shared_task(name="orders.tick_task")
def tick_task() -> str:
    """The orders room's one beat task."""
    return actions.tick(now=timezone.now())
