"""``manage.py shops``: connect a shop and print the webhook URL to paste into its platform,
or list the shops with their URLs and how many requests each had refused."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from orders.contacts import is_known_currency
from orders.models import Platform, Shop
from orders.models.shops import new_secret, validate_timezone


class Command(BaseCommand):
    help = "Add a shop connection (and print its webhook URL), or list the shops."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list}")
        add = actions.add_parser("add", help="Connect a shop and print the webhook URL to paste into its platform.")
        add.add_argument("platform", help=f"One of: {', '.join(Platform.values)}.")
        add.add_argument("slug", help="Short name used in the webhook URL, e.g. acme-eu.")
        add.add_argument("--secret", help="Webhook secret (Shopify: the app's client secret); generated if left out.")
        add.add_argument("--name", help="Display name; defaults to the slug in words.")
        add.add_argument("--currency", help="ISO 4217 code of the shop's currency, e.g. EUR.")
        add.add_argument("--timezone", help="IANA time zone of the shop, e.g. Europe/Berlin.")
        add.add_argument("--country", help="ISO 3166 country code, used to read local phone numbers, e.g. DE.")
        add.add_argument("--api-url", help="WooCommerce: the site URL; BigCommerce: the store's API path.")
        add.add_argument("--api-key", help="WooCommerce consumer key; BigCommerce access token.")
        add.add_argument("--api-secret", help="WooCommerce consumer secret.")
        actions.add_parser("list", help="List the shops with their webhook URLs.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "add":
            self.add_shop(options)
        else:
            self.list_shops()

    def add_shop(self, options: dict[str, Any]) -> None:
        platform, slug = options["platform"].lower(), options["slug"]
        if platform not in Platform.values:
            choices = ", ".join(Platform.values)
            raise CommandError(f"Unknown platform {options['platform']!r}. Choose one of: {choices}.")
        if options["timezone"]:
            try:
                validate_timezone(options["timezone"])
            except ValidationError as exc:
                raise CommandError(exc.messages[0]) from None
        if options["currency"] and not is_known_currency(options["currency"]):
            raise CommandError(f"Unknown currency {options['currency']!r}: give an ISO 4217 code such as EUR or USD.")
        existing = Shop.objects.filter(slug=slug).first()
        if existing is not None:
            raise CommandError(f"The slug {slug!r} is taken by {existing}; choose another one.")

        generated = not options["secret"]
        shop = Shop(
            name=options["name"] or slug.replace("-", " ").replace("_", " ").title(),
            slug=slug,
            platform=platform,
            webhook_secret=options["secret"] or new_secret(),
            api_url=options["api_url"] or "",
            api_key=options["api_key"] or "",
            api_secret=options["api_secret"] or "",
        )
        for field in ("currency", "timezone", "country"):
            if options[field]:
                value = options[field]
                setattr(shop, field, value if field == "timezone" else value.upper())
        try:
            shop.full_clean()
            with transaction.atomic():
                shop.save()
        except ValidationError as exc:
            problems = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
            raise CommandError(f"The shop was not added. {problems}") from None
        except IntegrityError:
            # Someone took the slug between our check and the insert.
            raise CommandError(f"The slug {slug!r} was taken just now; choose another one.") from None

        self.stdout.write(self.style.SUCCESS(f"Added {shop}."))
        self.stdout.write(f"Webhook URL: {shop.webhook_url()}")
        if generated:
            self.stdout.write(f"Webhook secret (generated): {shop.webhook_secret}")
        self.stdout.write(shop.webhook_instructions())

    def list_shops(self) -> None:
        shops = list(Shop.objects.order_by("slug"))
        if not shops:
            self.stdout.write("No shops yet. Add one with: manage.py shops add <platform> <slug>")
            return
        header = ("SLUG", "PLATFORM", "WEBHOOK URL", "ACTIVE", "REJECTED")
        rows = [
            (s.slug, s.platform, s.webhook_url(), "yes" if s.is_active else "no", str(s.rejected_count)) for s in shops
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
