from __future__ import annotations

from django.apps import AppConfig


class MarketingConfig(AppConfig):
    name = "marketing"
    verbose_name = "Marketing"

    def ready(self) -> None:
        from marketing import insight_receivers, receivers

        receivers.connect()
        insight_receivers.connect()
