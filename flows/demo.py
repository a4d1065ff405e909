"""Demo data for the flows room: the three seed flows, live on the demo shop."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from django.utils import timezone

from flows.models import Flow
from flows.recipes import RECIPES, create_from_recipe
from orders.models import Shop


def seed(out: TextIO, now: datetime | None = None) -> None:
    now = now or timezone.now()
    shop = Shop.objects.filter(slug="acme").first()
    for slug, recipe in RECIPES.items():
        if Flow.objects.filter(recipe=slug).exists():
            continue
        flow = create_from_recipe(slug=slug, shop=shop, now=now, live=True)
        out.write(f"flows: {flow.name!r} is live (trigger {flow.trigger}, {flow.current_version.steps.count()} steps)\n")
