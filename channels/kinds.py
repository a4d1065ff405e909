from __future__ import annotations

from django.db import models


class ChannelKind(models.TextChoices):
    """The fixed list of channel kinds. Settings choose which backend serves each."""

    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    VIBER = "viber", "Viber"
    TELEGRAM = "telegram", "Telegram"
    MESSENGER = "messenger", "Facebook Messenger"
    LINE = "line", "LINE"
    MOBILE_PUSH = "mobile_push", "Mobile push"
    WEB_PUSH = "web_push", "Web push"
