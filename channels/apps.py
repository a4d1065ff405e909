from __future__ import annotations

from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels (transport and ledger)"

    def ready(self) -> None:
        from channels import checks  # noqa: F401  registers the system check
