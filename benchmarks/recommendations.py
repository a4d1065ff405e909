"""The recommendation benchmark: a generated catalogue, its rollups, each lookup timed
over random customers against a naive query straight from the orders, and the query
plans. Runs in a scratch database (see ``benchmarks/run.py``); prints figures and fails
only when a lookup scans a big table sequentially, never on a timing."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

BIG_TABLES = frozenset(
    {
        "marketing_productpopularity",
        "marketing_productcooccurrence",
        "orders_order",
        "orders_orderline",
        "orders_productview",
    }
)
ALGORITHMS = ("popular", "recently_viewed", "bought_together")


# --- query plans (also used by the tests) ------------------------------------------------


def plan_nodes(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Every node of the planner's plan for ``sql``, depth first."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes: list[dict[str, Any]] = []
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(reversed(node.get("Plans", [])))
    return nodes


def seq_scans(nodes: list[dict[str, Any]], tables: set[str] | frozenset[str]) -> list[str]:
    """The tables among ``tables`` that the plan reads with a sequential scan."""
    return [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in tables]


def index_scans(nodes: list[dict[str, Any]], table: str) -> list[str]:
    """How the plan reads ``table`` through an index: "Index Scan using <index>", ...
    (a bitmap scan names its table on the heap node and its index on the child)."""
    found = []
    for node in nodes:
        if node.get("Relation Name") != table:
            continue
        if node["Node Type"] in ("Index Scan", "Index Only Scan"):
            found.append(f"{node['Node Type']} using {node['Index Name']}")
        elif node["Node Type"] == "Bitmap Heap Scan":
            below = [n for n in _subtree(node) if n["Node Type"] == "Bitmap Index Scan"]
            found.extend(f"Bitmap Index Scan using {n['Index Name']}" for n in below)
    return found


def _subtree(node: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], list(node.get("Plans", []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(child.get("Plans", []))
    return out


def explain_text(sql: str, params: list[Any] | None = None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


# --- the catalogue -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    products: int
    customers: int
    orders: int
    lines_per_order: int
    views: int
    days: int
    sample: int
    tail: int
    seed: int


def _generate(scale: Scale, now: datetime) -> tuple[int, int, int]:
    """Customers and products through the ORM; the bulk of orders, lines and views with
    set-based SQL (products skewed toward a popular head, and the second line of an order
    a near neighbour of the first, so some pairs go together). Returns (shop id, first
    customer id, first product id)."""
    from orders.models import Customer, Product, Shop

    shop = Shop.objects.create(name="Bench shop", slug="bench", platform="custom", currency="USD")
    customers = Customer.objects.bulk_create(
        (Customer(email=f"c{n}@bench.example", email_valid=True) for n in range(scale.customers)),
        batch_size=5000,
    )
    products = Product.objects.bulk_create(
        (
            Product(
                shop=shop,
                external_id=f"p{n}",
                sku=f"SKU-{n}",
                name=f"Product {n}",
                url=f"https://bench.example/p/{n}",
                image_url=f"https://cdn.bench.example/p/{n}.jpg",
                price=Decimal(5 + n % 200),
            )
            for n in range(scale.products)
        ),
        batch_size=5000,
    )
    first_customer, first_product = customers[0].pk, products[0].pk
    bulk_orders = scale.orders - scale.tail
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [(scale.seed % 1000) / 1000])
        cursor.execute(
            """
            INSERT INTO orders_order (shop_id, external_id, number, customer_id, email, status, raw_status,
                currency, subtotal, shipping_total, tax_total, discount_total, total, placed_at,
                source_updated_at, shipping_address, tracking_number, carrier, tracking_url, deleted_at,
                problems, created_at, updated_at)
            SELECT %(shop)s, 'o' || t.g, t.g::text, %(c0)s + floor(random() * %(nc)s)::bigint, '', 'paid', 'paid',
                'USD', t.total, 0, 0, 0, t.total, t.at, t.at, '{}'::jsonb, '', '', '', NULL, '[]'::jsonb, t.at, t.at
            FROM (
                SELECT g, %(now)s::timestamptz - random() * (%(days)s * interval '1 day') AS at,
                       round((10 + random() * 190)::numeric, 2) AS total
                FROM generate_series(1, %(n)s) g
            ) t
            """,
            {
                "shop": shop.pk,
                "c0": first_customer,
                "nc": scale.customers,
                "n": bulk_orders,
                "now": now,
                "days": scale.days,
            },
        )
        cursor.execute(
            """
            WITH picks AS MATERIALIZED (
                SELECT id AS order_id,
                       floor(power(random(), 2.5) * %(np)s)::int AS a,
                       1 + floor(random() * 10)::int AS near,
                       floor(power(random(), 2.5) * %(np)s)::int AS c
                FROM orders_order
            )
            INSERT INTO orders_orderline (order_id, position, external_id, product_id, sku, name, quantity, price,
                total, image_url, url)
            SELECT order_id, k, '', %(p0)s + pick, 'SKU-' || pick, 'Product ' || pick, 1 + k %% 2, 10, 10, '', ''
            FROM (
                SELECT order_id, k,
                       CASE k WHEN 0 THEN a WHEN 1 THEN (a + near) %% %(np)s ELSE (c + k) %% %(np)s END AS pick
                FROM picks CROSS JOIN generate_series(0, %(last)s) k
            ) lines
            """,
            {"np": scale.products, "p0": first_product, "last": scale.lines_per_order - 1},
        )
        cursor.execute(
            """
            INSERT INTO orders_productview (customer_id, product_id, viewed_at, delivery_id)
            SELECT %(c0)s + floor(random() * %(nc)s)::bigint, %(p0)s + floor(power(random(), 2) * %(np)s)::bigint,
                   %(now)s::timestamptz - random() * (%(days)s * interval '1 day'), NULL
            FROM generate_series(1, %(n)s) g
            ON CONFLICT DO NOTHING
            """,
            {
                "c0": first_customer,
                "nc": scale.customers,
                "p0": first_product,
                "np": scale.products,
                "now": now,
                "days": scale.days,
                "n": scale.views - scale.tail,
            },
        )
    return shop.pk, first_customer, first_product


def _tail_through_the_receivers(scale: Scale, now: datetime, ids: tuple[int, int, int]) -> dict[str, list[float]]:
    """The last orders and views arrive one by one through the same functions the signal
    receivers call, each in its own transaction as in the orders worker; times in ms."""
    from marketing.conversions import attribute_order
    from marketing.insight_receivers import add_order_to_rollups, add_view_to_rollups
    from orders.models import Order, OrderLine, ProductView

    shop_id, first_customer, first_product = ids
    rng = random.Random(scale.seed)
    timings: dict[str, list[float]] = {"rollups per order": [], "attribution per order": [], "rollups per view": []}
    for n in range(scale.tail):
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        with transaction.atomic():
            order = Order.objects.create(
                shop_id=shop_id,
                external_id=f"tail-{n}",
                customer_id=first_customer + rng.randrange(scale.customers),
                status="paid",
                currency="USD",
                total=Decimal("42.00"),
                placed_at=at,
                source_updated_at=at,
            )
            picks = [int(scale.products * rng.random() ** 2.5) for _ in range(scale.lines_per_order)]
            OrderLine.objects.bulk_create(
                OrderLine(order=order, position=k, product_id=first_product + p, name=f"Product {p}", quantity=1)
                for k, p in enumerate(picks)
            )
            started = time.perf_counter()
            add_order_to_rollups(order=order)
            middle = time.perf_counter()
            attribute_order(order=order, now=now)
            timings["rollups per order"].append((middle - started) * 1000)
            timings["attribution per order"].append((time.perf_counter() - middle) * 1000)
        with transaction.atomic():
            view = ProductView.objects.create(
                customer_id=first_customer + rng.randrange(scale.customers),
                product_id=first_product + int(scale.products * rng.random() ** 2),
                viewed_at=now - timedelta(seconds=rng.uniform(0, 86400), microseconds=n),
            )
            started = time.perf_counter()
            add_view_to_rollups(view=view)
            timings["rollups per view"].append((time.perf_counter() - started) * 1000)
    return timings


def _rollups_match_a_recompute() -> bool:
    """Whether the rollups built by bulk SQL plus the receivers equal a full recompute."""
    from marketing.insight_receivers import rebuild_rollups

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_popularity AS "
            "SELECT product_id, day, orders, quantity, views FROM marketing_productpopularity"
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_pairs AS SELECT product_id, other_id, orders FROM marketing_productcooccurrence"
        )
        rebuild_rollups()
        cursor.execute(
            """
            SELECT
              (SELECT count(*) FROM (
                 (SELECT product_id, day, orders, quantity, views FROM marketing_productpopularity
                  EXCEPT SELECT * FROM bench_popularity)
                 UNION ALL
                 (SELECT * FROM bench_popularity
                  EXCEPT SELECT product_id, day, orders, quantity, views FROM marketing_productpopularity)) d)
            + (SELECT count(*) FROM (
                 (SELECT product_id, other_id, orders FROM marketing_productcooccurrence
                  EXCEPT SELECT * FROM bench_pairs)
                 UNION ALL
                 (SELECT * FROM bench_pairs
                  EXCEPT SELECT product_id, other_id, orders FROM marketing_productcooccurrence)) d)
            """
        )
        (differences,) = cursor.fetchone()
        cursor.execute("DROP TABLE bench_popularity, bench_pairs")
    return differences == 0


# --- the naive ceilings ----------------------------------------------------------------------

_NAIVE_POPULAR = """
SELECT l.product_id
FROM orders_orderline l JOIN orders_order o ON o.id = l.order_id
WHERE o.placed_at >= %s AND o.placed_at <= %s AND l.product_id IS NOT NULL AND NOT (l.product_id = ANY(%s::bigint[]))
GROUP BY l.product_id
ORDER BY COUNT(DISTINCT o.id) DESC, l.product_id
LIMIT %s
"""

_NAIVE_BOUGHT_TOGETHER = """
SELECT other.product_id
FROM orders_orderline seed JOIN orders_orderline other
  ON other.order_id = seed.order_id AND other.product_id <> seed.product_id
WHERE seed.product_id = ANY(%s::bigint[]) AND NOT (other.product_id = ANY(%s::bigint[]))
GROUP BY other.product_id
ORDER BY COUNT(DISTINCT other.order_id) DESC, other.product_id
LIMIT %s
"""


def _naive(algorithm: str, customer: Any, now: datetime, limit: int) -> tuple[str, list[Any]] | None:
    """The same question answered straight from the orders, without the rollups: the
    query and its parameters (the customer's purchases read the same way as the lookup)."""
    from marketing import recommendations as r

    ask = r._Ask(customer_id=customer.pk, shop_id=None, limit=limit, now=now, days=r.DEFAULT_POPULAR_DAYS)
    bought = r._bought(ask)
    if algorithm == "popular":
        today = now.astimezone(UTC).date()
        start = datetime.combine(today - timedelta(days=ask.days - 1), datetime.min.time(), tzinfo=UTC)
        return _NAIVE_POPULAR, [start, now, list(bought.last_bought), limit]
    if algorithm == "bought_together":
        return _NAIVE_BOUGHT_TOGETHER, [bought.recent[: r.MAX_SEED_PRODUCTS], list(bought.last_bought), limit]
    return None


# --- measuring ---------------------------------------------------------------------------------


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _time(call: Callable[[], Any], rounds: list[float]) -> Any:
    started = time.perf_counter()
    result = call()
    rounds.append((time.perf_counter() - started) * 1000)
    return result


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0])


def _plans(customer: Any, now: datetime, limit: int) -> list[str]:
    """Print each lookup's plan; return what scans a big table sequentially."""
    from marketing.recommendations import recommend

    problems = []
    for algorithm in ALGORITHMS:
        with CaptureQueriesContext(connection) as queries:
            recommend(customer=customer, algorithm=algorithm, limit=limit, now=now)
        print(f"\n--- EXPLAIN {algorithm} (customer {customer.pk}): {len(queries)} queries")
        for query in queries.captured_queries:
            sql = query["sql"]
            tables = sorted(t for t in BIG_TABLES if t in sql)
            print(f"\n{sql.strip()[:400]}{' ...' if len(sql.strip()) > 400 else ''}")
            print(explain_text(sql))
            scanned = seq_scans(plan_nodes(sql), set(tables))
            if scanned:
                problems.append(f"{algorithm}: Seq Scan on {', '.join(scanned)}")
    return problems


def run(scale: Scale) -> int:
    """Generate, measure, print. Returns the exit status: 1 when a lookup plan scans a
    big table sequentially, else 0."""
    from marketing.insight_receivers import rebuild_rollups
    from marketing.recommendations import recommend
    from orders.models import Customer

    now = timezone.now().replace(microsecond=0)
    limit = 8
    print(
        f"catalogue: {scale.products:,} products, {scale.customers:,} customers, {scale.orders:,} orders "
        f"x {scale.lines_per_order} lines over {scale.days} days, {scale.views:,} product views"
    )
    started = time.perf_counter()
    ids = _generate(scale, now)
    generated = time.perf_counter()
    popularity_rows, pair_rows = rebuild_rollups()
    rebuilt = time.perf_counter()
    print(f"generated in {generated - started:.1f} s; rollups built by bulk SQL in {rebuilt - generated:.1f} s")
    print(f"  ({popularity_rows:,} popularity rows, {pair_rows:,} co-occurrence rows before the tail)")

    tail = _tail_through_the_receivers(scale, now, ids)
    for name, samples in tail.items():
        p50, p95 = _ms(samples)
        print(f"receivers, {name}: p50 {p50:.2f} ms, p95 {p95:.2f} ms ({len(samples)} rounds)")
    same = _rollups_match_a_recompute()
    print(f"rollups after the receivers equal a full recompute: {'yes' if same else 'NO'}")

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print("\nrows:")
    for table in sorted(BIG_TABLES):
        print(f"  {table:32} {_count(table):>12,} rows")

    rng = random.Random(scale.seed)
    buyers = list(Customer.objects.filter(orders__isnull=False).distinct().values_list("pk", flat=True))
    sample = [Customer.objects.get(pk=pk) for pk in rng.sample(buyers, min(scale.sample, len(buyers)))]
    results: dict[str, tuple[float, float]] = {}
    for algorithm in ALGORITHMS:
        rounds: list[float] = []
        naive_rounds: list[float] = []
        empty = 0
        recommend(customer=sample[0], algorithm=algorithm, limit=limit, now=now)  # warm the connection
        for customer in sample:
            found = _time(lambda: recommend(customer=customer, algorithm=algorithm, limit=limit, now=now), rounds)
            empty += not found
            naive = _naive(algorithm, customer, now, limit)
            if naive is not None:
                sql, params = naive
                _time(lambda: _run(sql, params), naive_rounds)
        results[algorithm] = _ms(rounds)
        if naive_rounds:
            results[f"naive {algorithm}"] = _ms(naive_rounds)
        if empty:
            print(f"  ({algorithm}: {empty} of {len(sample)} customers got no products)")

    print(f"\nlookups over {len(sample)} random customers who ordered, limit {limit}:")
    print(f"  {'':34}{'p50':>10}{'p95':>10}")
    for name, (p50, p95) in results.items():
        print(f"  {name:34}{p50:>7.2f} ms{p95:>7.2f} ms")
    for algorithm in ALGORITHMS:
        if f"naive {algorithm}" in results:
            ratio = results[algorithm][1] / results[f"naive {algorithm}"][1]
            print(f"{algorithm}: rollup p95 / naive p95 = {ratio:.3f}")

    problems = _plans(sample[0], now, limit)
    naive = _naive("popular", sample[0], now, limit)
    if naive is not None:
        print("\n--- EXPLAIN naive popular, for contrast (not checked)")
        print(explain_text(*naive))
    print()
    if not same:
        problems.append("the rollups differ from a full recompute")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("every lookup reads the big tables through an index")
    return 1 if problems else 0


def _run(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def parse(argv: list[str] | None = None) -> Scale:
    parser = argparse.ArgumentParser(description="Time the recommendation lookups on a generated catalogue.")
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--lines-per-order", type=int, default=3)
    parser.add_argument("--views", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--sample", type=int, default=200, help="customers timed per algorithm")
    parser.add_argument("--tail", type=int, default=500, help="orders and views fed through the receivers")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    return Scale(
        products=args.products,
        customers=args.customers,
        orders=args.orders,
        lines_per_order=args.lines_per_order,
        views=args.views,
        days=args.days,
        sample=args.sample,
        tail=min(args.tail, args.orders, args.views),
        seed=args.seed,
    )
