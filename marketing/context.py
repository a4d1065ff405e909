"""The data a campaign template can use.

``build_context`` turns a customer, a shop and optionally an order into plain data:
dicts, lists, strings, numbers (``Decimal``), dates and datetimes, booleans and ``None``,
plus two read-only, bounded lookups. Only the fields listed here are copied; no
database object, setting or secret ever reaches a template.

``recipient``: the customer
    ``first_name``, ``last_name``, ``full_name``, ``email``, ``phone`` (E.164),
    ``locale`` (e.g. ``de_DE``: the customer's, else the likely one for the shop's
    country, else ``en_US``), ``timezone`` (the customer's zone name, else the shop's),
    ``tags`` (names of our tags on the customer),
    ``recommendations(algorithm="popular", limit=4)``: a list of products, each
    ``name``, ``sku``, ``url``, ``image``, ``price`` and ``price_formatted``; at most 12, and an
    empty list when the send offers none. Algorithms: ``popular``, ``recently_viewed``,
    ``bought_together`` (see ``marketing.recommendations``),
    ``last_received_promo_code("pool-slug")``: the code the send issued to this customer
    from the campaign's promo pool before rendering. Rendering never issues a code.

``order`` (only when the message is about an order)
    ``number``, ``status`` (canonical, e.g. ``shipped``) and ``status_label``
    ("Shipped"), ``placed_at`` (in the customer's zone), ``currency``, ``subtotal``,
    ``shipping``, ``tax``, ``discount``, ``total`` and each as ``*_formatted`` money text
    (``total_formatted`` is "$213.94" in USD for en_US, "213,94 €" in EUR for de_DE),
    ``item_count``, ``lines`` (each ``name``, ``sku``, ``quantity``, ``price``,
    ``total``, ``price_formatted``, ``total_formatted``, ``image``, ``url``),
    ``shipping_address`` (``name``, ``company``, ``address1``, ``address2``, ``city``,
    ``province``, ``zip``, ``country``, ``country_code``, ``phone``; missing parts are
    empty, and ``lines`` is the address as a list of lines), ``delivery_estimate`` (a
    date: the local day the order was placed plus the shop's business days, Monday to
    Friday; setting ``HERALD_DELIVERY_BUSINESS_DAYS``, an int or a dict of shop slug to
    days with a ``"default"``, default 5), ``tracking_number``, ``carrier``,
    ``tracking_url``.

``message``
    ``sending_datetime`` (now, in the customer's zone), ``unsubscribe_url``,
    ``view_in_browser_url``, ``send_key`` (the send's idempotency key).

``shop``
    ``name``, ``url``, ``support_email``, ``postal_address``, ``currency`` (empty when
    the message is about no shop: a brand-wide send to a customer without orders).

``event`` (when the flow was started by an event): the event's own data, as given.

Filters: ``money`` (``{{ order.total|money }}``, or ``|money("EUR")``), ``date`` and
``datetime`` (``{{ order.placed_at|date("long") }}``, in the customer's zone and
locale), ``add_days`` (``{{ message.sending_datetime|add_days(7)|date }}``), and
Jinja's own (``truncate``, ``upper``, ``default``, ``join``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from jinja2 import pass_context
from jinja2.runtime import Context

from marketing.models import CustomerTag
from orders.statuses import OrderStatus

if TYPE_CHECKING:
    from marketing.models import Campaign
    from orders.models import Customer, Order, Shop

MAX_RECOMMENDATIONS = 12
# A template asking for more distinct lists than this is looping over lookups.
MAX_RECOMMENDATION_LOOKUPS = 8
DEFAULT_DELIVERY_BUSINESS_DAYS = 5
DEFAULT_LOCALE = "en_US"
ADDRESS_FIELDS = (
    "name", "company", "address1", "address2", "city", "province", "zip", "country", "country_code", "phone"
)
# Countries that write the postcode before the town ("10115 Berlin").
_POSTCODE_FIRST = frozenset("AT BE CH CZ DE DK ES FI FR GR HU IS IT LU NL NO PL PT SE SK".split())
_PLAIN = (str, int, float, Decimal, bool, datetime, date, type(None))


class ContextError(Exception):
    """A lookup a template asked for cannot be answered (a promo pool the campaign does
    not use, a recommendation list asked with bad arguments). The message is shown to
    staff with the template line."""


def parse_locale(value: str) -> Locale:
    """Babel's locale for ``value`` (``de-DE``, ``de_DE``, ``de``), else ``en_US``."""
    try:
        return Locale.parse((value or DEFAULT_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE)


def format_money(amount: Any, currency: str, locale: str) -> str:
    """``amount`` written in ``currency`` for ``locale``: "$213.94", "213,94 €", "¥2,139".
    Empty for no amount; a bare number when the currency is unknown."""
    if amount is None or amount == "":
        return ""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except InvalidOperation:
        raise ContextError(f"{amount!r} is not an amount of money") from None
    where = parse_locale(locale)
    if len(currency or "") == 3:
        return format_currency(value, currency.upper(), locale=where)
    return format_decimal(value, format="#,##0.00", locale=where)


# --- Filters that present the context's data -------------------------------------------


def _recipient(context: Context) -> Mapping[str, Any]:
    recipient = context.get("recipient")
    return recipient if isinstance(recipient, Mapping) else {}


def _locale(context: Context) -> Locale:
    return parse_locale(str(_recipient(context).get("locale") or ""))


def _zone(context: Context) -> ZoneInfo:
    try:
        return ZoneInfo(str(_recipient(context).get("timezone") or "UTC"))
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _moment(value: Any) -> datetime | date:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ContextError(f"'{value[:40]}' is not a date") from None
    if not isinstance(value, date):
        raise ContextError(f"{type(value).__name__} {str(value)[:40]!r} is not a date")
    return value


@pass_context
def money_filter(context: Context, amount: Any, currency: str | None = None) -> str:
    """``{{ order.total|money }}``: the amount in the order's (else the shop's) currency,
    or in ``currency``, written for the recipient's locale."""
    if currency is None:
        for source in ("order", "shop"):
            holder = context.get(source)
            if isinstance(holder, Mapping) and holder.get("currency"):
                currency = str(holder["currency"])
                break
    return format_money(amount, currency or "", str(_recipient(context).get("locale") or ""))


def add_days_filter(value: Any, days: int) -> datetime | date:
    """``{{ message.sending_datetime|add_days(7)|date }}``. Days are added on the local
    calendar, so a week later is the same local time across a DST change."""
    return _moment(value) + timedelta(days=int(days))


@pass_context
def date_filter(context: Context, value: Any, fmt: str = "medium") -> str:
    """A date in the recipient's time zone and locale: ``fmt`` is short, medium, long,
    full or a CLDR pattern such as ``d MMMM y``."""
    moment = _moment(value)
    if isinstance(moment, datetime):
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(_zone(context)).date()
    return format_date(moment, format=fmt, locale=_locale(context))


@pass_context
def datetime_filter(context: Context, value: Any, fmt: str = "medium") -> str:
    """A date and time in the recipient's time zone and locale (a naive one is UTC)."""
    moment = _moment(value)
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment, format=fmt, tzinfo=_zone(context), locale=_locale(context))


FILTERS: dict[str, Callable[..., Any]] = {
    "money": money_filter,
    "add_days": add_days_filter,
    "date": date_filter,
    "datetime": datetime_filter,
}


def recipient_locale(customer: Customer, shop: Shop | None) -> str:
    if customer.locale:
        return str(parse_locale(customer.locale))
    if shop is not None and shop.country:
        try:
            return str(Locale.parse(f"und_{shop.country.upper()}"))
        except (UnknownLocaleError, ValueError):
            pass
    return DEFAULT_LOCALE


def add_business_days(day: date, days: int) -> date:
    """``day`` moved forward ``days`` working days (Monday to Friday)."""
    while days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def delivery_business_days(shop: Shop) -> int:
    configured = getattr(settings, "HERALD_DELIVERY_BUSINESS_DAYS", DEFAULT_DELIVERY_BUSINESS_DAYS)
    if isinstance(configured, Mapping):
        configured = configured.get(shop.slug, configured.get("default", DEFAULT_DELIVERY_BUSINESS_DAYS))
    return int(configured)


def _quantity(value: Decimal) -> Decimal:
    # Shops send 2 as 2.000; a customer should read 2.
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _address(raw: Any) -> dict[str, Any]:
    source = raw if isinstance(raw, Mapping) else {}
    address: dict[str, Any] = {key: str(source.get(key) or "") for key in ADDRESS_FIELDS}
    city, province, postcode = address["city"], address["province"], address["zip"]
    if address["country_code"].upper() in _POSTCODE_FIRST:
        city_lines = [f"{postcode} {city}".strip(), province]
    else:
        city_lines = [", ".join(part for part in (city, f"{province} {postcode}".strip()) if part)]
    parts = [address["name"], address["company"], address["address1"], address["address2"], *city_lines]
    address["lines"] = [part for part in [*parts, address["country"]] if part]
    return address


def _order(order: Order, *, locale: str, zone: Any) -> dict[str, Any]:
    currency = order.currency or order.shop.currency

    def money(amount: Decimal) -> str:
        return format_money(amount, currency, locale)

    lines = []
    for line in order.lines.select_related("product"):
        product = line.product
        lines.append(
            {
                "name": line.name,
                "sku": line.sku,
                "quantity": _quantity(line.quantity),
                "price": line.price,
                "total": line.total,
                "price_formatted": money(line.price),
                "total_formatted": money(line.total),
                "image": line.image_url or (product.image_url if product else ""),
                "url": line.url or (product.url if product else ""),
            }
        )
    placed_at = order.placed_at.astimezone(zone)
    amounts = {
        "subtotal": order.subtotal,
        "shipping": order.shipping_total,
        "tax": order.tax_total,
        "discount": order.discount_total,
        "total": order.total,
    }
    return {
        "number": order.number or order.external_id,
        "status": order.status,
        "status_label": str(OrderStatus(order.status).label) if order.status in OrderStatus.values else order.status,
        "placed_at": placed_at,
        "currency": currency,
        **amounts,
        **{f"{name}_formatted": money(amount) for name, amount in amounts.items()},
        "item_count": _quantity(sum((line["quantity"] for line in lines), Decimal(0))),
        "lines": lines,
        "shipping_address": _address(order.shipping_address),
        "delivery_estimate": add_business_days(placed_at.date(), delivery_business_days(order.shop)),
        "tracking_number": order.tracking_number,
        "carrier": order.carrier,
        "tracking_url": order.tracking_url,
    }


def _product(raw: Mapping[str, Any], *, currency: str, locale: str) -> dict[str, Any]:
    price = raw.get("price")
    if price is not None and not isinstance(price, Decimal):
        price = Decimal(str(price))
    currency = str(raw.get("currency") or currency)
    return {
        "name": str(raw.get("name") or ""),
        "sku": str(raw.get("sku") or ""),
        "url": str(raw.get("url") or ""),
        "image": str(raw.get("image") or raw.get("image_url") or ""),
        "price": price,
        "price_formatted": format_money(price, currency, locale) if price is not None else "",
    }


def _recommendations(
    recommend: Callable[[str, int], list[dict[str, Any]]] | None, *, currency: str, locale: str
) -> Callable[..., list[dict[str, Any]]]:
    answers: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def recommendations(algorithm: str = "popular", limit: int = 4) -> list[dict[str, Any]]:
        if not isinstance(algorithm, str) or not isinstance(limit, int) or isinstance(limit, bool):
            raise ContextError('recommendations takes an algorithm name and a number, e.g. ("popular", 4)')
        if recommend is None:
            return []
        key = (algorithm, max(0, min(limit, MAX_RECOMMENDATIONS)))
        if key not in answers:
            if len(answers) >= MAX_RECOMMENDATION_LOOKUPS:
                raise ContextError(f"a template may ask for at most {MAX_RECOMMENDATION_LOOKUPS} recommendation lists")
            try:
                found = recommend(key[0], key[1]) if key[1] else []
            except ValueError as error:  # an unknown algorithm: the message names the known ones
                raise ContextError(str(error)) from None
            answers[key] = [_product(item, currency=currency, locale=locale) for item in found[: key[1]]]
        return answers[key]

    return recommendations


def _promo_lookup(codes: Mapping[str, str], campaign_pool: str | None) -> Callable[[str], str]:
    def last_received_promo_code(pool_slug: str) -> str:
        if pool_slug in codes:
            return codes[pool_slug]
        if campaign_pool is None:
            raise ContextError(
                f"the campaign uses no promo pool, so there is no code from '{pool_slug}': "
                "choose the pool in the campaign"
            )
        if pool_slug != campaign_pool:
            raise ContextError(f"the campaign's promo pool is '{campaign_pool}', not '{pool_slug}'")
        raise ContextError(f"no promo code from the pool '{pool_slug}' was issued for this message")

    return last_received_promo_code


def _shop(shop: Shop | None) -> dict[str, str]:
    if shop is None:
        return {"name": "", "url": "", "support_email": "", "postal_address": "", "currency": ""}
    return {
        "name": shop.name,
        "url": shop.url,
        "support_email": shop.support_email,
        "postal_address": shop.postal_address,
        "currency": shop.currency,
    }


def plain(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` made of plain data only: mappings become dicts with string
    keys, sequences lists, anything else its text."""
    if depth > 10:
        return str(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item, depth + 1) for item in value]
    return str(value)


def build_context(
    *,
    customer: Customer,
    shop: Shop | None,
    order: Order | None = None,
    campaign: Campaign | None = None,
    now: datetime,
    send_key: str = "",
    promo_codes: Mapping[str, str] | None = None,
    recommend: Callable[[str, int], list[dict[str, Any]]] | None = None,
    unsubscribe_url: str = "",
    view_in_browser_url: str = "",
    event: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The template context (see the module docstring). ``now`` must be aware. Without
    a ``shop`` the order's shop is used; with neither, the shop's fields are empty.
    ``promo_codes`` maps a pool slug to the code the send issued from it;
    ``recommend(algorithm, limit)`` returns product dicts (name, url, image or
    image_url, price) and is called at most a few times per render."""
    if now.tzinfo is None:
        raise ValueError("build_context needs an aware 'now'.")
    if shop is None and order is not None:
        shop = order.shop
    zone = customer.zone or (shop.zone if shop is not None else ZoneInfo("UTC"))
    locale = recipient_locale(customer, shop)
    shop_currency = shop.currency if shop is not None else ""
    currency = (order.currency if order is not None else "") or shop_currency
    tags = CustomerTag.objects.filter(customer=customer).order_by("tag__name").values_list("tag__name", flat=True)
    pool = campaign.promo_pool.slug if campaign is not None and campaign.promo_pool_id else None
    context: dict[str, Any] = {
        "recipient": {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "full_name": f"{customer.first_name} {customer.last_name}".strip(),
            "email": customer.email,
            "phone": customer.phone,
            "locale": locale,
            "timezone": zone.key,
            "tags": list(tags),
            "recommendations": _recommendations(recommend, currency=currency, locale=locale),
            "last_received_promo_code": _promo_lookup(dict(promo_codes or {}), pool),
        },
        "message": {
            "sending_datetime": now.astimezone(zone),
            "unsubscribe_url": unsubscribe_url,
            "view_in_browser_url": view_in_browser_url,
            "send_key": send_key,
        },
        "shop": _shop(shop),
    }
    if order is not None:
        context["order"] = _order(order, locale=locale, zone=zone)
    if event is not None:
        context["event"] = plain(event)
    return context
