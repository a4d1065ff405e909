from __future__ import annotations

from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows"

    def ready(self) -> None:
        from flows import receivers

        receivers.connect()
