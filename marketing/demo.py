"""Demo data for the marketing room: consent as the demo shop reported it, a tag or two."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from django.utils import timezone

from marketing.consent import consent_status, set_consent
from marketing.tags import tag_customer
from orders.models import Customer


def seed(out: TextIO, now: datetime | None = None) -> None:
    now = now or timezone.now()
    changed = 0
    for customer in Customer.objects.all():
        for channel, flag in (("email", customer.accepts_email_marketing), ("sms", customer.accepts_sms_marketing)):
            if flag is None or consent_status(customer, channel) != "never_asked":
                continue
            status = "subscribed" if flag else "unsubscribed"
            changed += set_consent(customer=customer, channel=channel, status=status, source="shop", now=now,
                                   detail="demo data")  # fmt: skip
        if customer.orders.count() >= 2:
            tag_customer(customer=customer, tag_name="repeat buyer", source="demo", now=now)
    out.write(f"marketing: {changed} consent records from the shops' flags\n")
