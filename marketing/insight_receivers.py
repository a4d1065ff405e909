"""Rollups and attribution, kept up to date from the orders signals.

``orders`` sends its signals inside the processing transaction, so everything here
commits or rolls back with the order or view that caused it, and it stays cheap: the
rollups cost one read of the order's lines and at most two statements, each a single
multi-row ``INSERT .. ON CONFLICT DO UPDATE``; attribution (``marketing.conversions``)
a few reads on the customer's sends.

Counting once: an order is counted when ``order_created`` fires, which ``orders`` sends
exactly once per order (on the insert that created the row; a replayed delivery finds
the row and sends nothing). Later updates, line changes and deletions at the shop do not
move the rollups: they describe what was ordered when it was ordered. A view is counted
when ``product_viewed`` fires, which happens only when the view row was new.
``rebuild_rollups`` recomputes both tables from the mirror with the same rules, for an
install over an existing history (nothing counted it yet) or after a restore.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from marketing.conversions import attribute_order
from marketing.models import ProductCoOccurrence, ProductPopularity
from orders import signals
from orders.models import Order, OrderLine, ProductView

# An order with hundreds of distinct products (a wholesale or B2B order) would add
# n*(n-1) pair rows inside the order's transaction and says little about what goes
# together; only its first products, by line position, are paired.
MAX_PAIRED_PRODUCTS = 40

_POPULARITY = connection.ops.quote_name(ProductPopularity._meta.db_table)
_PAIRS = connection.ops.quote_name(ProductCoOccurrence._meta.db_table)
_ORDERS = connection.ops.quote_name(Order._meta.db_table)
_LINES = connection.ops.quote_name(OrderLine._meta.db_table)
_VIEWS = connection.ops.quote_name(ProductView._meta.db_table)

# Rows are written in product order: two orders sharing products then lock the shared
# rows in the same order and cannot deadlock each other.
_ADD_ORDER_SQL = f"""
INSERT INTO {_POPULARITY} AS p (product_id, day, orders, quantity, views)
SELECT t.product_id, %s::date, 1, t.quantity, 0
FROM unnest(%s::bigint[], %s::numeric[]) AS t(product_id, quantity)
ORDER BY t.product_id
ON CONFLICT (product_id, day) DO UPDATE
SET orders = p.orders + 1, quantity = p.quantity + EXCLUDED.quantity
"""

_ADD_PAIRS_SQL = f"""
INSERT INTO {_PAIRS} AS c (product_id, other_id, orders)
SELECT a.id, b.id, 1
FROM unnest(%s::bigint[]) AS a(id) CROSS JOIN unnest(%s::bigint[]) AS b(id)
WHERE a.id <> b.id
ORDER BY a.id, b.id
ON CONFLICT (product_id, other_id) DO UPDATE SET orders = c.orders + 1
"""

_ADD_VIEW_SQL = f"""
INSERT INTO {_POPULARITY} AS p (product_id, day, orders, quantity, views)
VALUES (%s, %s::date, 0, 0, 1)
ON CONFLICT (product_id, day) DO UPDATE SET views = p.views + 1
"""


def add_order_to_rollups(*, order: Order) -> None:
    """Count ``order`` in the daily popularity (one order and its quantity per product,
    on the UTC day it was placed) and in the co-occurrence of every pair of distinct
    products in it, both ways round. Call once per order: the receiver of
    ``order_created`` does."""
    quantities: dict[int, Decimal] = {}
    lines = OrderLine.objects.filter(order=order, product__isnull=False).order_by("position", "id")
    for product_id, quantity in lines.values_list("product_id", "quantity"):
        quantities[product_id] = quantities.get(product_id, Decimal(0)) + quantity
    if not quantities:
        return
    day = order.placed_at.astimezone(UTC).date()
    products = list(quantities)
    with connection.cursor() as cursor:
        cursor.execute(_ADD_ORDER_SQL, [day, products, [quantities[p] for p in products]])
        paired = products[:MAX_PAIRED_PRODUCTS]
        if len(paired) > 1:
            cursor.execute(_ADD_PAIRS_SQL, [paired, paired])


def add_view_to_rollups(*, view: ProductView) -> None:
    """Count one view of a product on the UTC day it happened."""
    with connection.cursor() as cursor:
        cursor.execute(_ADD_VIEW_SQL, [view.product_id, view.viewed_at.astimezone(UTC).date()])


_REBUILD_POPULARITY_SQL = f"""
INSERT INTO {_POPULARITY} (product_id, day, orders, quantity, views)
SELECT product_id, day, SUM(orders), SUM(quantity), SUM(views)
FROM (
    SELECT l.product_id, (o.placed_at AT TIME ZONE 'UTC')::date AS day,
           COUNT(DISTINCT o.id) AS orders, SUM(l.quantity) AS quantity, 0 AS views
    FROM {_LINES} l JOIN {_ORDERS} o ON o.id = l.order_id
    WHERE l.product_id IS NOT NULL
    GROUP BY 1, 2
    UNION ALL
    SELECT v.product_id, (v.viewed_at AT TIME ZONE 'UTC')::date, 0, 0, COUNT(*)
    FROM {_VIEWS} v
    GROUP BY 1, 2
) AS counts
GROUP BY product_id, day
-- Day by day, as the receivers write them: a range of days then lies on few pages.
ORDER BY day, product_id
"""

_REBUILD_PAIRS_SQL = f"""
WITH firsts AS (
    SELECT DISTINCT ON (order_id, product_id) order_id, product_id, position, id
    FROM {_LINES}
    WHERE product_id IS NOT NULL
    ORDER BY order_id, product_id, position, id
), ranked AS (
    SELECT order_id, product_id,
           row_number() OVER (PARTITION BY order_id ORDER BY position, id) AS rank
    FROM firsts
), paired AS (
    SELECT order_id, product_id FROM ranked WHERE rank <= %s
)
INSERT INTO {_PAIRS} (product_id, other_id, orders)
SELECT a.product_id, b.product_id, COUNT(*)
FROM paired a JOIN paired b ON a.order_id = b.order_id AND a.product_id <> b.product_id
GROUP BY a.product_id, b.product_id
"""


def rebuild_rollups() -> tuple[int, int]:
    """Recompute both rollup tables from every order and view we hold, with the same
    rules as the receivers (an order the shop edited later counts with its lines as they
    are now). Returns (popularity rows, co-occurrence rows).

    The tables are locked against the receivers for the duration: an order committing
    meanwhile either is seen by the recompute or adds itself after it, never both."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {_POPULARITY}, {_PAIRS} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {_POPULARITY}")
        cursor.execute(f"DELETE FROM {_PAIRS}")
        cursor.execute(_REBUILD_POPULARITY_SQL)
        popularity = cursor.rowcount
        cursor.execute(_REBUILD_PAIRS_SQL, [MAX_PAIRED_PRODUCTS])
        return popularity, cursor.rowcount


# --- receivers ------------------------------------------------------------------------


def _order_created(sender: Any, *, order: Order, **kwargs: Any) -> None:
    add_order_to_rollups(order=order)
    attribute_order(order=order, now=timezone.now())


def _product_viewed(sender: Any, *, view: ProductView, **kwargs: Any) -> None:
    add_view_to_rollups(view=view)


_RECEIVERS: list[tuple[Signal, Any, str]] = [
    (signals.order_created, _order_created, "marketing.insights.order_created"),
    (signals.product_viewed, _product_viewed, "marketing.insights.product_viewed"),
]


def connect() -> None:
    """Connect the rollup and attribution receivers (``MarketingConfig.ready()`` calls
    this). Connecting twice is harmless: each receiver has a dispatch uid."""
    for signal, receiver, uid in _RECEIVERS:
        signal.connect(receiver, dispatch_uid=uid)


def disconnect() -> None:
    for signal, _receiver, uid in _RECEIVERS:
        signal.disconnect(dispatch_uid=uid)


def is_connected() -> bool:
    """Whether ``connect()`` is in effect (tests connect only when the app has not)."""
    return all(
        any(lookup_key[0] == uid for lookup_key, *_ in signal.receivers) for signal, _receiver, uid in _RECEIVERS
    )

