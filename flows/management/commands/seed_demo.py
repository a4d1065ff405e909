"""Load demo data: each app's ``demo.py`` in order, then an admin login it prints."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from flows import demo as flows_demo
from marketing import demo as marketing_demo
from orders import demo as orders_demo


class Command(BaseCommand):
    help = "Seed demo shops, customers, orders, consent and the three seed flows, and print an admin login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="Admin password (default: a new random one, printed).")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            orders_demo.seed(self.stdout)
            marketing_demo.seed(self.stdout)
            flows_demo.seed(self.stdout)
        User = get_user_model()
        password = options["password"] or secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username=options["username"], defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        url = f"{settings.HERALD_PUBLIC_URL}/{settings.HERALD_ADMIN_PATH}"
        self.stdout.write(self.style.SUCCESS(f"Admin: {url}  user {user.username}  password {password}"))
