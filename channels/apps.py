from __future__ import annotations

from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels (transport and ledger)"

    def ready(self) -> None:
        from channels import anymail_tracking, checks  # noqa: F401  checks registers the system check

        anymail_tracking.connect()
