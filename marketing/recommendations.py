"""Product recommendations for templates: bounded, read-only lookups.

Each algorithm is a handful of indexed reads whatever the size of the history:

- ``popular``: the products ordered most over the last N days (``days``, default
  ``HERALD_RECOMMENDATION_POPULAR_DAYS`` or 30, counted in UTC days up to and including
  today), summed from the daily ``ProductPopularity`` rollup over its (day, product)
  index; views break ties, so a shop with few orders still gets a ranking.
- ``recently_viewed``: the customer's last distinct viewed products, newest first, read
  from the newest views on the (customer, -viewed_at) index of ``orders.ProductView``.
- ``bought_together``: the products ordered most often together with the products of the
  customer's last orders, from ``ProductCoOccurrence`` on its (product, -orders) index.

``popular`` and ``bought_together`` leave out what the customer already bought (in
their last orders); ``recently_viewed`` leaves out a product bought after it was last
viewed. Nothing here writes: a template may call it while rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from marketing.models import ProductCoOccurrence, ProductPopularity
from orders.models import Customer, Order, OrderLine, Product, ProductView, Shop

MAX_LIMIT = 12
DEFAULT_POPULAR_DAYS = 30
# Bounds that keep each lookup small for a customer with a long history.
RECENT_VIEWS_READ = 200
ORDERS_READ = 50
SEED_ORDERS = 3
MAX_SEED_PRODUCTS = 10

_POPULARITY = connection.ops.quote_name(ProductPopularity._meta.db_table)
_PAIRS = connection.ops.quote_name(ProductCoOccurrence._meta.db_table)
_PRODUCTS = connection.ops.quote_name(Product._meta.db_table)
_ORDERS = connection.ops.quote_name(Order._meta.db_table)
_LINES = connection.ops.quote_name(OrderLine._meta.db_table)
_VIEWS = connection.ops.quote_name(ProductView._meta.db_table)

ProductDict = dict[str, Any]


@dataclass(frozen=True)
class _Ask:
    customer_id: int | None
    shop_id: int | None
    limit: int
    now: datetime
    days: int


@dataclass(frozen=True)
class _Bought:
    """What the customer bought in their last orders: product -> when last, and the
    products of their most recent orders, newest first."""

    last_bought: dict[int, datetime]
    recent: list[int]


_BOUGHT_SQL = f"""
SELECT l.product_id, MAX(o.placed_at), MIN(o.rank)
FROM (
    SELECT id, placed_at, row_number() OVER (ORDER BY placed_at DESC, id DESC) AS rank
    FROM (
        SELECT id, placed_at FROM {_ORDERS}
        WHERE customer_id = %s AND placed_at <= %s AND deleted_at IS NULL
        ORDER BY placed_at DESC
        LIMIT %s
    ) AS newest
) AS o
JOIN {_LINES} l ON l.order_id = o.id
WHERE l.product_id IS NOT NULL
GROUP BY l.product_id
ORDER BY MIN(o.rank), MAX(o.placed_at) DESC, l.product_id
"""


def _bought(ask: _Ask) -> _Bought:
    if ask.customer_id is None:
        return _Bought({}, [])
    with connection.cursor() as cursor:
        cursor.execute(_BOUGHT_SQL, [ask.customer_id, ask.now, ORDERS_READ])
        rows = cursor.fetchall()
    return _Bought(
        last_bought={product_id: placed_at for product_id, placed_at, _rank in rows},
        recent=[product_id for product_id, _placed_at, rank in rows if rank <= SEED_ORDERS],
    )


def _shop_join(alias: str, ask: _Ask) -> tuple[str, list[Any]]:
    if ask.shop_id is None:
        return "", []
    return f"JOIN {_PRODUCTS} shop_p ON shop_p.id = {alias} AND shop_p.shop_id = %s", [ask.shop_id]


def _popular(ask: _Ask) -> list[int]:
    bought = list(_bought(ask).last_bought)
    today = ask.now.astimezone(UTC).date()
    join, join_params = _shop_join("pp.product_id", ask)
    sql = f"""
        SELECT pp.product_id
        FROM {_POPULARITY} pp {join}
        WHERE pp.day > %s AND pp.day <= %s AND NOT (pp.product_id = ANY(%s::bigint[]))
        GROUP BY pp.product_id
        ORDER BY SUM(pp.orders) DESC, SUM(pp.views) DESC, pp.product_id
        LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*join_params, today - timedelta(days=ask.days), today, bought, ask.limit])
        return [row[0] for row in cursor.fetchall()]


def _recently_viewed(ask: _Ask) -> list[int]:
    if ask.customer_id is None:
        return []
    join, join_params = _shop_join("v.product_id", ask)
    sql = f"""
        SELECT v.product_id, MAX(v.viewed_at) AS last_viewed
        FROM (
            SELECT product_id, viewed_at FROM {_VIEWS}
            WHERE customer_id = %s AND viewed_at <= %s
            ORDER BY viewed_at DESC
            LIMIT %s
        ) AS v {join}
        GROUP BY v.product_id
        ORDER BY last_viewed DESC, v.product_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [ask.customer_id, ask.now, RECENT_VIEWS_READ, *join_params])
        viewed = cursor.fetchall()
    last_bought = _bought(ask).last_bought
    fresh = [p for p, seen in viewed if p not in last_bought or last_bought[p] < seen]
    return fresh[: ask.limit]


def _bought_together(ask: _Ask) -> list[int]:
    bought = _bought(ask)
    seeds = bought.recent[:MAX_SEED_PRODUCTS]
    if not seeds:
        return []
    join, join_params = _shop_join("c.other_id", ask)
    # Each seed contributes its own strongest partners (an index range read that stops
    # at the limit); the partners' counts are then summed across seeds.
    sql = f"""
        SELECT best.other_id
        FROM unnest(%s::bigint[]) AS seed(id)
        CROSS JOIN LATERAL (
            SELECT c.other_id, c.orders
            FROM {_PAIRS} c {join}
            WHERE c.product_id = seed.id AND NOT (c.other_id = ANY(%s::bigint[]))
            ORDER BY c.orders DESC
            LIMIT %s
        ) AS best
        GROUP BY best.other_id
        ORDER BY SUM(best.orders) DESC, best.other_id
        LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [seeds, *join_params, list(bought.last_bought), ask.limit, ask.limit])
        return [row[0] for row in cursor.fetchall()]


ALGORITHMS: dict[str, Callable[[_Ask], list[int]]] = {
    "popular": _popular,
    "recently_viewed": _recently_viewed,
    "bought_together": _bought_together,
}


def _products(ids: list[int]) -> list[ProductDict]:
    if not ids:
        return []
    rows = Product.objects.filter(pk__in=ids).select_related("shop").only(
        "id", "name", "sku", "url", "image_url", "price", "shop__currency"
    )
    by_id = {
        product.pk: {
            "id": product.pk,
            "name": product.name,
            "sku": product.sku,
            "url": product.url,
            "image_url": product.image_url,
            "price": product.price,
            "currency": product.shop.currency,
        }
        for product in rows
    }
    return [by_id[i] for i in ids if i in by_id]


def bounded_limit(limit: Any) -> int:
    """The limit as a whole number between 0 and ``MAX_LIMIT``; raises ValueError for
    anything that is not a whole number."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"The number of recommendations must be a whole number such as 4, not {limit!r}.")
    return max(0, min(limit, MAX_LIMIT))


def recommend(
    *,
    customer: Customer | None,
    algorithm: str,
    limit: int,
    now: datetime,
    shop: Shop | None = None,
    days: int | None = None,
) -> list[ProductDict]:
    """Up to ``limit`` (at most ``MAX_LIMIT``) products as plain dicts (id, name, sku,
    url, image_url, price, currency), best first. ``shop`` keeps to that shop's products;
    without a customer only ``popular`` has anything to say.

    Raises ValueError naming the known algorithms when ``algorithm`` is not one of them,
    and when ``limit`` is not a whole number."""
    finder = ALGORITHMS.get(algorithm)
    if finder is None:
        known = ", ".join(ALGORITHMS)
        raise ValueError(f"There is no recommendation algorithm {algorithm!r}; use one of: {known}.")
    limit = bounded_limit(limit)
    if days is None:
        days = int(getattr(settings, "HERALD_RECOMMENDATION_POPULAR_DAYS", DEFAULT_POPULAR_DAYS))
    if limit == 0:
        return []
    ask = _Ask(
        customer_id=customer.pk if customer is not None else None,
        shop_id=shop.pk if shop is not None else None,
        limit=limit,
        now=now,
        days=max(1, days),
    )
    return _products(finder(ask))


def recommender_for(
    customer: Customer | None, now: datetime, shop: Shop | None = None
) -> Callable[[str, int], list[ProductDict]]:
    """The ``recommendations(algorithm, limit=4)`` function of a template context. One
    render asking the same question twice (a loop, two blocks) reads the tables once."""
    answers: dict[tuple[str, int], list[ProductDict]] = {}

    def recommendations(algorithm: str = "popular", limit: int = 4) -> list[ProductDict]:
        key = (str(algorithm), bounded_limit(limit))
        if key not in answers:
            answers[key] = recommend(customer=customer, algorithm=key[0], limit=key[1], now=now, shop=shop)
        return [dict(product) for product in answers[key]]

    return recommendations
