from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import (
    CustomerIdentity,
    OrderLine,
    OrderStatusChange,
    PrivacyRequest,
    Product,
    ProductView,
    RejectedRequest,
    Shop,
    StatusMapping,
    WebhookDelivery,
)
from orders.statuses import OrderStatus
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 20, 21, 15, tzinfo=UTC)
ORDER_BODY = json.dumps({"id": 820982911946154508, "name": "#9999", "financial_status": "paid"}).encode()


def make_delivery(shop: Shop, key: str, body: bytes = ORDER_BODY, **fields: object) -> WebhookDelivery:
    defaults: dict[str, object] = {"protocol": "shopify", "topic": "orders/create", "received_at": AT}
    return WebhookDelivery.objects.create(shop=shop, dedupe_key=key, body=body, **{**defaults, **fields})


def make_privacy_request(shop: Shop, key: str, **fields: object) -> PrivacyRequest:
    delivery = make_delivery(shop, key, b'{"shop_id": 1}', topic="customers/redact", status="processed")
    return PrivacyRequest.objects.create(
        shop=shop, kind=PrivacyRequest.Kind.CUSTOMER_REDACT, delivery=delivery, received_at=AT, **fields
    )


@dataclass
class World:
    shop: Shop
    rows: dict[str, object]


@pytest.fixture
def world(settings: object) -> World:
    settings.HERALD_PUBLIC_URL = "https://herald.example.com"  # type: ignore[attr-defined]
    shop = ShopFactory(name="Acme", slug="acme", platform="shopify", rejected_count=3, last_rejected_at=AT)
    customer = CustomerFactory(
        email="ada@example.com", email_raw=" Ada@Example.COM ", phone="+447700900123", phone_raw="07700 900123"
    )
    CustomerIdentity.objects.create(customer=customer, shop=shop, external_id="115310627314723954")
    order = OrderFactory(
        shop=shop, customer=customer, number="#9999", problems=["Unknown currency 'XYZ'; amounts kept as sent."]
    )
    product = Product.objects.create(shop=shop, external_id="632910392", sku="IPOD2008PINK", name="IPod Nano - Pink")
    OrderLine.objects.create(order=order, product=product, sku="IPOD2008PINK", name="IPod Nano - Pink", price=199)
    delivery = make_delivery(shop, "orders/create:evt-1", status="failed", error="Order has no created_at.")
    OrderStatusChange.objects.create(
        order=order,
        new_status=OrderStatus.SHIPPED,
        new_raw_status="paid/fulfilled",
        changed_at=AT,
        applied=False,
        delivery=delivery,
    )
    rejected = RejectedRequest.objects.create(
        shop=shop, path="/webhooks/shopify/acme/", status_code=401, reason="Signature does not match.", received_at=AT
    )
    mapping = StatusMapping.objects.create(platform="woocommerce", raw_status="wc-awaiting-pickup", first_seen_at=AT)
    view = ProductView.objects.create(customer=customer, product=product, viewed_at=AT)
    rows = {
        "shop": shop,
        "customer": customer,
        "order": order,
        "webhookdelivery": delivery,
        "rejectedrequest": rejected,
        "privacyrequest": make_privacy_request(shop, "customers/redact:evt-2", email="gone@example.com"),
        "statusmapping": mapping,
        "product": product,
        "productview": view,
    }
    return World(shop=shop, rows=rows)


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return html.unescape(response.content.decode())


ALL_MODELS = ["shop", "customer", "order", "webhookdelivery", "rejectedrequest", "privacyrequest", "statusmapping"]
ALL_MODELS += ["product", "productview"]


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_changelist_and_change_page_opens_for_staff(admin_client, world, model):
    row = world.rows[model]
    page(admin_client, reverse(f"admin:orders_{model}_changelist"))
    page(admin_client, reverse(f"admin:orders_{model}_change", args=[row.pk]))


@pytest.mark.parametrize(
    ("platform", "path", "instruction"),
    [
        ("shopify", "/webhooks/shopify/north/", "paste the app's client secret"),
        ("woocommerce", "/webhooks/woocommerce/north/", "WooCommerce > Settings > Advanced > Webhooks"),
        ("bigcommerce", "/webhooks/bigcommerce/north/", "a header X-Herald-Webhook-Secret"),
        ("magento", "/webhooks/magento/north/", "Herald-Signature header"),
        ("volusion", "/webhooks/generic/north/", "see docs/WEBHOOKS.md"),
    ],
)
def test_shop_page_shows_the_webhook_url_to_paste_and_where(admin_client, world, platform, path, instruction):
    shop = ShopFactory(slug="north", platform=platform)
    content = page(admin_client, reverse("admin:orders_shop_change", args=[shop.pk]))
    assert f"https://herald.example.com{path}" in content
    assert instruction in content


def test_shop_page_counts_rejections_and_links_to_them_and_to_the_deliveries(admin_client, world):
    content = page(admin_client, reverse("admin:orders_shop_change", args=[world.shop.pk]))
    assert "3 refused, the last at 2026-11-20 21:15 UTC" in content
    assert f"/orders/rejectedrequest/?shop__id__exact={world.shop.pk}" in content
    assert f"/orders/webhookdelivery/?shop__id__exact={world.shop.pk}&status__exact=failed" in content
    rejected_list = reverse("admin:orders_rejectedrequest_changelist")
    listing = page(admin_client, f"{rejected_list}?shop__id__exact={world.shop.pk}")
    assert "Signature does not match." in listing


def test_delivery_page_shows_a_json_body_decoded_and_pretty(admin_client, world):
    delivery = world.rows["webhookdelivery"]
    content = page(admin_client, reverse("admin:orders_webhookdelivery_change", args=[delivery.pk]))
    assert f"{len(ORDER_BODY)} bytes, JSON" in content
    assert '{\n  "id": 820982911946154508,\n  "name": "#9999",\n  "financial_status": "paid"\n}' in content
    assert "Order has no created_at." in content


def test_delivery_page_shows_a_body_that_is_not_utf8_as_escaped_text(admin_client, world):
    body = b"caf\xe9 <script>alert(1)</script>"
    delivery = make_delivery(world.shop, "orders/create:evt-latin1", body=body)
    response = admin_client.get(reverse("admin:orders_webhookdelivery_change", args=[delivery.pk]))
    raw = response.content.decode()
    assert "<script>alert(1)</script>" not in raw
    assert "caf\ufffd &lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert f"{len(body)} bytes, text (not JSON)" in raw


def test_delivery_list_shows_the_error_and_the_body_size(admin_client, world):
    content = page(admin_client, reverse("admin:orders_webhookdelivery_changelist") + "?status__exact=failed")
    assert "Order has no created_at." in content
    assert f'<td class="field-size">{len(ORDER_BODY)}</td>' in content


def test_deliveries_cannot_be_added_edited_or_deleted(admin_client, world):
    delivery = world.rows["webhookdelivery"]
    change = reverse("admin:orders_webhookdelivery_change", args=[delivery.pk])
    assert admin_client.get(reverse("admin:orders_webhookdelivery_add")).status_code == 403
    assert admin_client.post(change, {"topic": "orders/paid", "status": "processed"}).status_code == 403
    assert admin_client.get(reverse("admin:orders_webhookdelivery_delete", args=[delivery.pk])).status_code == 403
    delivery.refresh_from_db()
    assert (delivery.topic, delivery.status) == ("orders/create", "failed")


def test_replay_action_moves_a_failed_delivery_back_to_pending(
    admin_client, world, django_capture_on_commit_callbacks
):
    failed = world.rows["webhookdelivery"]
    failed.attempts = 8
    failed.save(update_fields=["attempts"])
    pending = make_delivery(world.shop, "orders/create:evt-pending")
    url = reverse("admin:orders_webhookdelivery_changelist")
    with django_capture_on_commit_callbacks() as enqueues:
        response = admin_client.post(
            url, {"action": "replay_selected", "_selected_action": [failed.pk, pending.pk]}, follow=True
        )
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert len(enqueues) == 1  # the already-pending one is not queued twice
    content = html.unescape(response.content.decode())
    assert "Queued 1 delivery for processing again." in content
    assert "1 already pending" in content


def test_replay_button_on_a_failed_delivery_queues_it_again(admin_client, world, django_capture_on_commit_callbacks):
    failed = world.rows["webhookdelivery"]
    replay_url = reverse("admin:orders_webhookdelivery_replay", args=[failed.pk])
    assert replay_url in page(admin_client, reverse("admin:orders_webhookdelivery_change", args=[failed.pk]))
    assert admin_client.get(replay_url).status_code == 405
    with django_capture_on_commit_callbacks() as enqueues:
        response = admin_client.post(replay_url)
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == "pending"
    assert len(enqueues) == 1


def test_resolve_action_resolves_open_privacy_requests_and_keeps_earlier_resolutions(admin_client, world):
    open_request = world.rows["privacyrequest"]
    earlier = make_privacy_request(world.shop, "customers/redact:evt-3", resolved_at=AT, resolved_by="grace")
    response = admin_client.post(
        reverse("admin:orders_privacyrequest_changelist"),
        {"action": "mark_resolved", "_selected_action": [open_request.pk, earlier.pk]},
        follow=True,
    )
    open_request.refresh_from_db()
    earlier.refresh_from_db()
    assert open_request.resolved_at is not None
    assert open_request.resolved_by == "admin"
    assert (earlier.resolved_at, earlier.resolved_by) == (AT, "grace")
    assert "Marked 1 privacy request resolved." in html.unescape(response.content.decode())


def test_privacy_requests_list_open_ones_first_with_the_count_in_the_title(admin_client, world):
    make_privacy_request(world.shop, "customers/redact:evt-4", resolved_at=AT, resolved_by="grace")
    newest_open = make_privacy_request(world.shop, "customers/redact:evt-5")
    response = admin_client.get(reverse("admin:orders_privacyrequest_changelist"))
    listed = [(r.resolved_at is None) for r in response.context["cl"].result_list]
    assert listed == [True, True, False]
    assert response.context["cl"].result_list[0].pk == max(newest_open.pk, world.rows["privacyrequest"].pk)
    assert "Privacy requests: 2 open" in response.content.decode()
    open_only = admin_client.get(reverse("admin:orders_privacyrequest_changelist") + "?state=open")
    assert len(open_only.context["cl"].result_list) == 2


def test_unmapped_raw_status_is_listed_first_in_the_status_map(admin_client, world):
    assert StatusMapping.objects.filter(status=OrderStatus.UNKNOWN).count() == 1
    response = admin_client.get(reverse("admin:orders_statusmapping_changelist"))
    first = response.context["cl"].result_list[0]
    assert (first.platform, first.raw_status) == ("woocommerce", "wc-awaiting-pickup")
    assert "Status map: 1 raw status not mapped yet" in response.content.decode()


def test_unmapped_status_can_be_mapped_from_the_list(admin_client, world):
    mapping = world.rows["statusmapping"]
    url = reverse("admin:orders_statusmapping_changelist") + "?status__exact=unknown"
    response = admin_client.post(
        url,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(mapping.pk),
            "form-0-status": OrderStatus.OUT_FOR_DELIVERY,
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.status == OrderStatus.OUT_FOR_DELIVERY


def test_order_page_shows_lines_status_history_and_problems(admin_client, world):
    order = world.rows["order"]
    content = page(admin_client, reverse("admin:orders_order_change", args=[order.pk]))
    assert "IPod Nano - Pink" in content
    assert "no: older than the state already applied (history only)" in content
    delivery = world.rows["webhookdelivery"]
    assert reverse("admin:orders_webhookdelivery_change", args=[delivery.pk]) in content
    assert "<li>Unknown currency 'XYZ'; amounts kept as sent.</li>" in content


def test_orders_can_be_found_by_number_external_id_or_email(admin_client, world):
    order = world.rows["order"]
    OrderFactory(shop=world.shop, number="#1", email="other@example.com")
    for term in ("9999", order.external_id, "ada@example.com"):
        response = admin_client.get(reverse("admin:orders_order_changelist"), {"q": term})
        assert [o.pk for o in response.context["cl"].result_list] == [order.pk], term


def test_customer_page_shows_raw_and_normalised_contacts_identities_and_orders(admin_client, world):
    customer = world.rows["customer"]
    content = page(admin_client, reverse("admin:orders_customer_change", args=[customer.pk]))
    for text in ("+447700900123", "07700 900123", " Ada@Example.COM ", "115310627314723954", "#9999</a> at acme"):
        assert text in content, text
    assert f"/orders/order/?customer__id__exact={customer.pk}" in content


@pytest.mark.parametrize("model", ["order", "webhookdelivery", "productview", "privacyrequest", "customer"])
def test_changelist_queries_do_not_grow_with_the_rows(admin_client, world, model):
    url = reverse(f"admin:orders_{model}_changelist")
    admin_client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        page(admin_client, url)
    for n in range(4):
        shop = ShopFactory()
        customer = CustomerFactory()
        order = OrderFactory(shop=shop, customer=customer)
        make_delivery(shop, f"more-{n}")
        product = Product.objects.create(shop=shop, external_id=f"p{n}", name=f"Product {n}", price=Decimal("5"))
        ProductView.objects.create(customer=customer, product=product, viewed_at=AT)
        make_privacy_request(shop, f"privacy-{n}", customer=customer)
        OrderLine.objects.create(order=order, name="Thing", product=product)
    with CaptureQueriesContext(connection) as many:
        page(admin_client, url)
    assert len(many) == len(few)
