"""The Celery application. Workers and beat start from here: ``celery -A marketing``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketing.settings")

app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["orders", "channels", "marketing", "flows"])
