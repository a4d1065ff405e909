from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from channels import actions, upkeep


@shared_task(name="channels.send_message_task")
def send_message_task(message_id: int) -> str:
    return actions.deliver_message(message_id=message_id)


@shared_task(name="channels.reconcile_message_task")
def reconcile_message_task(message_id: int) -> str:
    return upkeep.reconcile_message(message_id=message_id, now=timezone.now())


@shared_task(name="channels.process_receipt_task")
def process_receipt_task(receipt_id: int) -> str:
    from channels.receipts import process_receipt

    return process_receipt(receipt_id=receipt_id)


@shared_task(name="channels.tick_task")
def tick_task() -> str:
    """The channels room's one beat task."""
    return upkeep.tick(now=timezone.now())
