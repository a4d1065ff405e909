"""Rollups kept up to date from the orders signals, and the recommendation lookups on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks.recommendations import index_scans, plan_nodes, seq_scans
from marketing import insight_receivers
from marketing.insight_receivers import rebuild_rollups
from marketing.models import ProductCoOccurrence, ProductPopularity
from marketing.recommendations import MAX_LIMIT, recommend, recommender_for
from orders import signals
from orders.models import Customer, Order, OrderLine, Product, ProductView, Shop
from tests.conftest import herald_signature, load_fixture, run_pending
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def receivers() -> Iterator[None]:
    already = insight_receivers.is_connected()
    insight_receivers.connect()
    yield
    if not already:
        insight_receivers.disconnect()


@pytest.fixture
def shop() -> Shop:
    return ShopFactory(slug="corner-store", platform="custom", webhook_secret="hrld_test_secret")


def products(shop: Shop, *names: str) -> list[Product]:
    return [
        Product.objects.create(shop=shop, external_id=name, name=name.title(), sku=name.upper(), price=Decimal("9.50"))
        for name in names
    ]


def place(customer: Customer, shop: Shop, lines: list[tuple[Product | None, str]], placed_at: datetime) -> Order:
    """An order with these (product, quantity) lines, announced as ``orders`` does."""
    order = OrderFactory(shop=shop, customer=customer, placed_at=placed_at)
    for position, (product, quantity) in enumerate(lines):
        OrderLine.objects.create(
            order=order, position=position, product=product, name=product.name if product else "Gift wrap",
            quantity=Decimal(quantity),
        )
    signals.order_created.send(Order, order=order, event_id=f"order:{order.pk}:created", occurred_at=placed_at)
    return order


def view(customer: Customer, product: Product, at: datetime) -> ProductView:
    seen = ProductView.objects.create(customer=customer, product=product, viewed_at=at)
    signals.product_viewed.send(ProductView, view=seen, event_id=f"product-view:{seen.pk}", occurred_at=at)
    return seen


def popularity() -> dict[tuple[str, str], tuple[int, Decimal, int]]:
    rows = ProductPopularity.objects.select_related("product")
    return {(r.product.external_id, r.day.isoformat()): (r.orders, r.quantity, r.views) for r in rows}


def pairs() -> dict[tuple[str, str], int]:
    rows = ProductCoOccurrence.objects.select_related("product", "other")
    return {(r.product.external_id, r.other.external_id): r.orders for r in rows}


def names(found: list[dict[str, Any]]) -> list[str]:
    return [product["sku"] for product in found]


def post_event(client: Any, shop: Shop, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    response = client.generic(
        "POST", shop.webhook_path(), body, content_type="application/json",
        HTTP_HERALD_SIGNATURE=herald_signature(shop.webhook_secret, body),
    )
    assert response.status_code == 200, response.content


# --- rollups ---------------------------------------------------------------------------


def test_order_through_the_pipeline_counts_each_product_once_on_its_utc_day(shop, client):
    with time_machine.travel(NOW, tick=False):
        post_event(client, shop, load_fixture("generic", "order_created.json"))
        run_pending()
    assert popularity() == {
        ("prod_dripper_02", "2026-11-20"): (1, Decimal("1.000"), 0),
        ("prod_filters_100", "2026-11-20"): (1, Decimal("2.000"), 0),
    }
    assert pairs() == {("prod_dripper_02", "prod_filters_100"): 1, ("prod_filters_100", "prod_dripper_02"): 1}


def test_a_later_update_of_the_same_order_counts_nothing_again(shop, client):
    with time_machine.travel(NOW, tick=False):
        post_event(client, shop, load_fixture("generic", "order_created.json"))
        post_event(client, shop, load_fixture("generic", "order_status_changed.json"))
        run_pending()
    assert Order.objects.get().status == "shipped"
    assert {key: counts[0] for key, counts in popularity().items()} == {
        ("prod_dripper_02", "2026-11-20"): 1,
        ("prod_filters_100", "2026-11-20"): 1,
    }
    assert set(pairs().values()) == {1}


def test_product_view_through_the_pipeline_adds_a_view_to_that_day(shop, client):
    with time_machine.travel(NOW, tick=False):
        post_event(client, shop, load_fixture("generic", "product_viewed.json"))
        run_pending()
    assert popularity() == {("prod_kettle_gn", "2026-11-22"): (0, Decimal("0.000"), 1)}


def test_views_and_orders_share_the_products_daily_row(shop):
    kettle, mug = products(shop, "kettle", "mug")
    ada, bob = CustomerFactory(), CustomerFactory()
    view(ada, kettle, NOW - timedelta(hours=2))
    view(bob, kettle, NOW - timedelta(hours=1))
    place(ada, shop, [(kettle, "1"), (mug, "3")], NOW)
    assert popularity() == {
        ("kettle", "2026-11-23"): (1, Decimal("1.000"), 2),
        ("mug", "2026-11-23"): (1, Decimal("3.000"), 0),
    }


def test_co_occurrence_is_counted_both_ways_round_once_per_order(shop):
    a, b, c = products(shop, "a", "b", "c")
    customer = CustomerFactory()
    place(customer, shop, [(a, "1"), (b, "1")], NOW - DAY)
    place(customer, shop, [(a, "1"), (b, "2"), (c, "1"), (None, "1")], NOW)
    assert pairs() == {
        ("a", "b"): 2, ("b", "a"): 2,
        ("a", "c"): 1, ("c", "a"): 1,
        ("b", "c"): 1, ("c", "b"): 1,
    }


def test_two_lines_of_one_product_count_one_order_and_both_quantities(shop):
    (shirt,) = products(shop, "shirt")
    place(CustomerFactory(), shop, [(shirt, "1"), (shirt, "2"), (None, "1")], NOW)
    assert popularity() == {("shirt", "2026-11-23"): (1, Decimal("3.000"), 0)}
    assert pairs() == {}


def test_an_evening_order_in_new_york_counts_on_the_next_utc_day(shop):
    (lamp,) = products(shop, "lamp")
    place(CustomerFactory(), shop, [(lamp, "1")], datetime.fromisoformat("2026-11-20T21:30:00-05:00"))
    assert list(popularity()) == [("lamp", "2026-11-21")]


def test_rebuilding_gives_the_same_rollups_as_the_receivers(shop):
    a, b, c = products(shop, "a", "b", "c")
    ada, bob = CustomerFactory(), CustomerFactory()
    place(ada, shop, [(a, "1"), (b, "2"), (a, "1")], NOW - 3 * DAY)
    place(bob, shop, [(b, "1"), (c, "1")], NOW - DAY)
    place(bob, shop, [(c, "4")], NOW)
    view(ada, c, NOW - 2 * DAY)
    view(bob, a, NOW - 2 * DAY)
    incremental = (popularity(), pairs())

    assert rebuild_rollups() == (len(incremental[0]), len(incremental[1]))
    assert (popularity(), pairs()) == incremental


# --- the lookups -------------------------------------------------------------------------


def test_popular_ranks_by_orders_in_the_last_30_days_without_what_the_customer_bought(shop):
    hit, runner_up, third, owned, old_hit = products(shop, "hit", "runner-up", "third", "owned", "old-hit")
    others = CustomerFactory.create_batch(3)
    for customer in others:
        place(customer, shop, [(hit, "1"), (owned, "1")], NOW - 2 * DAY)
        place(customer, shop, [(old_hit, "1")], NOW - 31 * DAY)
        place(customer, shop, [(old_hit, "1")], NOW - 40 * DAY)
    place(others[0], shop, [(runner_up, "1")], NOW - 29 * DAY)
    place(others[1], shop, [(runner_up, "5")], NOW)
    place(others[2], shop, [(third, "9")], NOW - 10 * DAY)
    me = CustomerFactory()
    place(me, shop, [(owned, "1")], NOW - 100 * DAY)

    found = recommend(customer=me, algorithm="popular", limit=5, now=NOW)

    assert names(found) == ["HIT", "RUNNER-UP", "THIRD"]
    assert found[0] == {
        "id": hit.pk, "name": "Hit", "sku": "HIT", "url": "", "image_url": "",
        "price": Decimal("9.50"), "currency": "USD",
    }
    assert names(recommend(customer=me, algorithm="popular", limit=5, now=NOW, days=60)) == [
        "OLD-HIT", "HIT", "RUNNER-UP", "THIRD"
    ]


def test_popular_breaks_a_tie_in_orders_by_views(shop):
    quiet, talked_about = products(shop, "quiet", "talked-about")
    buyer, browser = CustomerFactory(), CustomerFactory()
    place(buyer, shop, [(quiet, "1")], NOW - DAY)
    place(buyer, shop, [(talked_about, "1")], NOW - DAY)
    view(browser, talked_about, NOW - DAY)
    assert names(recommend(customer=None, algorithm="popular", limit=4, now=NOW)) == ["TALKED-ABOUT", "QUIET"]


def test_recently_viewed_lists_distinct_products_newest_first_without_those_bought_since(shop):
    kettle, mug, scale, beans = products(shop, "kettle", "mug", "scale", "beans")
    me = CustomerFactory()
    view(me, kettle, NOW - 5 * DAY)
    view(me, mug, NOW - 4 * DAY)
    view(me, scale, NOW - 3 * DAY)
    view(me, kettle, NOW - 2 * DAY)
    view(me, beans, NOW - 1 * DAY)
    view(me, mug, NOW + DAY)  # after "now": a simulation at NOW has not seen it yet
    place(me, shop, [(scale, "1")], NOW - 2 * DAY)  # bought after looking: leave out
    place(me, shop, [(beans, "1")], NOW - 10 * DAY)  # bought before looking again: keep
    view(CustomerFactory(), mug, NOW)

    found = recommend(customer=me, algorithm="recently_viewed", limit=12, now=NOW)

    assert names(found) == ["BEANS", "KETTLE", "MUG"]
    assert names(recommend(customer=me, algorithm="recently_viewed", limit=2, now=NOW)) == ["BEANS", "KETTLE"]


def test_bought_together_ranks_partners_of_the_last_orders_without_bought_products(shop):
    names_ = ("dripper", "filters", "kettle", "mug", "scale", "beans")
    dripper, filters, kettle, mug, scale, beans = products(shop, *names_)
    others = CustomerFactory.create_batch(4)
    for customer in others:
        place(customer, shop, [(dripper, "1"), (filters, "1"), (kettle, "1")], NOW - 20 * DAY)
    place(others[0], shop, [(dripper, "1"), (mug, "1")], NOW - 20 * DAY)
    place(others[1], shop, [(mug, "1"), (scale, "1")], NOW - 20 * DAY)
    place(others[2], shop, [(scale, "1"), (mug, "1")], NOW - 20 * DAY)
    place(others[3], shop, [(beans, "1"), (mug, "1")], NOW - 20 * DAY)
    me = CustomerFactory()
    place(me, shop, [(dripper, "1")], NOW - 3 * DAY)
    place(me, shop, [(filters, "1")], NOW - 2 * DAY)

    found = recommend(customer=me, algorithm="bought_together", limit=12, now=NOW)

    # kettle: 4 orders with the dripper + 4 with the filters; mug: 1 with the dripper.
    assert names(found) == ["KETTLE", "MUG"]
    assert names(recommend(customer=me, algorithm="bought_together", limit=1, now=NOW)) == ["KETTLE"]
    assert recommend(customer=CustomerFactory(), algorithm="bought_together", limit=4, now=NOW) == []


def test_limit_is_capped_at_twelve_and_zero_gives_nothing(shop):
    many = products(shop, *[f"p{n:02}" for n in range(15)])
    buyer = CustomerFactory()
    for product in many:
        place(buyer, shop, [(product, "1")], NOW)
    assert len(recommend(customer=None, algorithm="popular", limit=100, now=NOW)) == MAX_LIMIT == 12
    assert recommend(customer=None, algorithm="popular", limit=0, now=NOW) == []
    with pytest.raises(ValueError, match="whole number"):
        recommend(customer=None, algorithm="popular", limit="4", now=NOW)  # type: ignore[arg-type]


def test_unknown_algorithm_names_the_known_ones():
    with pytest.raises(ValueError) as raised:
        recommend(customer=None, algorithm="populer", limit=4, now=NOW)
    assert str(raised.value) == (
        "There is no recommendation algorithm 'populer'; use one of: popular, recently_viewed, bought_together."
    )


def test_a_shop_keeps_to_its_own_products(shop):
    (ours,) = products(shop, "ours")
    (theirs,) = products(ShopFactory(slug="outlet", currency="EUR"), "theirs")
    buyer = CustomerFactory()
    place(buyer, shop, [(ours, "1")], NOW)
    place(buyer, shop, [(theirs, "1")], NOW)
    place(buyer, shop, [(theirs, "1")], NOW)
    assert names(recommend(customer=None, algorithm="popular", limit=4, now=NOW)) == ["THEIRS", "OURS"]
    assert names(recommend(customer=None, algorithm="popular", limit=4, now=NOW, shop=shop)) == ["OURS"]


def test_recommender_for_reads_each_question_once_and_never_writes(shop):
    kettle, mug = products(shop, "kettle", "mug")
    me = CustomerFactory()
    place(CustomerFactory(), shop, [(kettle, "1"), (mug, "1")], NOW)
    view(me, mug, NOW)
    recommendations = recommender_for(me, NOW, shop)

    with CaptureQueriesContext(connection) as queries:
        first = recommendations("popular", 4)
        viewed = recommendations("recently_viewed")
    with CaptureQueriesContext(connection) as repeated:
        again = recommendations("popular", 4)
    assert names(first) == names(again) == ["MUG", "KETTLE"]  # a tie in orders; the mug was viewed
    assert names(viewed) == ["MUG"]
    assert {q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries} == {"SELECT"}
    assert repeated.captured_queries == []
    with pytest.raises(ValueError, match="popular, recently_viewed, bought_together"):
        recommendations("everything", 4)


def test_without_a_customer_only_popular_has_anything_to_say(shop):
    (kettle,) = products(shop, "kettle")
    place(CustomerFactory(), shop, [(kettle, "1")], NOW)
    assert names(recommend(customer=None, algorithm="popular", limit=4, now=NOW)) == ["KETTLE"]
    assert recommend(customer=None, algorithm="recently_viewed", limit=4, now=NOW) == []
    assert recommend(customer=None, algorithm="bought_together", limit=4, now=NOW) == []


# --- query plans ---------------------------------------------------------------------------


def _catalogue(shop: Shop) -> Customer:
    """A few thousand rows in each table a lookup reads, with statistics, so the planner
    chooses between a scan and an index on honest numbers."""
    catalogue = Product.objects.bulk_create(
        Product(shop=shop, external_id=f"p{n}", name=f"Product {n}", sku=f"P{n}") for n in range(400)
    )
    customers = Customer.objects.bulk_create(Customer(email=f"c{n}@example.com") for n in range(300))
    first = catalogue[0].pk
    with connection.cursor() as cursor:
        # Popularity arrives day by day: 40 products a day for a year.
        cursor.execute(
            "INSERT INTO marketing_productpopularity (product_id, day, orders, quantity, views) "
            "SELECT %s + (d * 7 + k) %% 400, %s::date - d, 1 + (d + k) %% 5, 1, k %% 3 "
            "FROM generate_series(364, 0, -1) d CROSS JOIN generate_series(0, 39) k",
            [first, NOW.date()],
        )
        cursor.execute(
            "INSERT INTO marketing_productcooccurrence (product_id, other_id, orders) "
            "SELECT %s + p, %s + (p + k) %% 400, 1 + (p * k) %% 17 "
            "FROM generate_series(0, 399) p CROSS JOIN generate_series(1, 30) k",
            [first, first],
        )
        cursor.execute(
            "INSERT INTO orders_productview (customer_id, product_id, viewed_at) "
            "SELECT %s + c, %s + (c * 13 + k) %% 400, %s::timestamptz - (k || ' hours')::interval "
            "FROM generate_series(0, 299) c CROSS JOIN generate_series(1, 20) k",
            [customers[0].pk, first, NOW],
        )
        cursor.execute("ANALYZE marketing_productpopularity, marketing_productcooccurrence, orders_productview")
    me = customers[7]
    place(me, shop, [(catalogue[3], "1"), (catalogue[5], "1")], NOW - 2 * DAY)
    return me


@pytest.mark.parametrize(
    ("algorithm", "table"),
    [
        ("popular", "marketing_productpopularity"),
        ("recently_viewed", "orders_productview"),
        ("bought_together", "marketing_productcooccurrence"),
    ],
)
def test_each_lookup_reads_its_table_through_an_index(shop, algorithm, table):
    me = _catalogue(shop)
    with CaptureQueriesContext(connection) as queries:
        found = recommend(customer=me, algorithm=algorithm, limit=8, now=NOW)
    assert len(found) == 8

    reading = [q["sql"] for q in queries.captured_queries if table in q["sql"]]
    assert len(reading) == 1
    nodes = plan_nodes(reading[0])
    assert seq_scans(nodes, {table}) == []
    assert index_scans(nodes, table), [node["Node Type"] for node in nodes]
