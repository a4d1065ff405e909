"""Our tags on customers, put there by staff and flows.

Tags are ``marketing``'s own table: the shop's fields live on ``orders.Customer`` and are
overwritten by the shop; nothing the shop sends touches these. Names are normalised so
"VIP Customer", " vip customer " and "vip-customer" are one tag.
"""

from __future__ import annotations

import re
from datetime import datetime

from marketing.models import CustomerTag, Tag
from orders.models import Customer

MAX_TAG_LENGTH = Tag._meta.get_field("name").max_length or 100
MAX_SOURCE_LENGTH = CustomerTag._meta.get_field("source").max_length or 100
_SPACES = re.compile(r"\s+")


def normalise_tag(name: str) -> str:
    """The tag's stored name: stripped, lowercased, each run of spaces a single "-".
    Raises ValueError for an empty name or one longer than ``MAX_TAG_LENGTH``."""
    normalised = _SPACES.sub("-", str(name).strip().lower())
    if not normalised:
        raise ValueError("A tag needs a name; this one is empty.")
    if len(normalised) > MAX_TAG_LENGTH:
        raise ValueError(
            f"The tag {normalised[:30]!r}... is {len(normalised)} characters long; "
            f"tags may be at most {MAX_TAG_LENGTH}."
        )
    return normalised


def tag_customer(*, customer: Customer, tag_name: str, source: str, now: datetime) -> bool:
    """Put the tag on the customer. Returns True when it was added, False when the
    customer already had it (the first source and time are kept). Safe under
    concurrent calls: both the tag and the customer's tag are unique."""
    tag, _ = Tag.objects.get_or_create(name=normalise_tag(tag_name))
    _, created = CustomerTag.objects.get_or_create(
        customer=customer, tag=tag, defaults={"source": source[:MAX_SOURCE_LENGTH], "created_at": now}
    )
    return created


def untag_customer(*, customer: Customer, tag_name: str) -> bool:
    """Take the tag off the customer. Returns True when it was there. The tag itself
    stays, for the other customers that have it and for flows that name it."""
    deleted, _ = CustomerTag.objects.filter(customer=customer, tag__name=normalise_tag(tag_name)).delete()
    return deleted > 0


def customer_tags(customer: Customer) -> list[str]:
    """The customer's tag names, alphabetically."""
    return list(CustomerTag.objects.filter(customer=customer).order_by("tag__name").values_list("tag__name", flat=True))


def has_tag(customer: Customer, tag_name: str) -> bool:
    """Whether the customer carries the tag (for flow conditions)."""
    return CustomerTag.objects.filter(customer=customer, tag__name=normalise_tag(tag_name)).exists()
