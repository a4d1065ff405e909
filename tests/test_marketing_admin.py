from __future__ import annotations

import base64
import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels.actions import send_message
from channels.models import Message
from marketing.consent import set_consent
from marketing.models import (
    Campaign, CampaignVariant, Consent, ConsentEvent, ContactPoint, Conversion, CustomerTag, PromoCode, PromoPool,
    Send, Suppression, Tag,
)  # fmt: skip
from marketing.starters import create_campaign_from_starter
from marketing.tags import tag_customer
from orders.models import Order, OrderLine
from orders.statuses import OrderStatus
from tests.campaign_helpers import make_campaign
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

pytestmark = pytest.mark.django_db


def url(name: str, *args: object) -> str:
    return reverse(f"admin:marketing_{name}", args=args)


def page(client: Client, address: str, **params: str) -> str:
    response = client.get(address, params)
    assert response.status_code == 200, (address, response.status_code, response.content[:3000])
    return html.unescape(response.content.decode())


def text(shown: str) -> str:
    """The page's words, without tags, on one line."""
    return " ".join(re.sub(r"<[^>]+>", " ", shown).split())


def notes(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def order() -> Order:
    shop = ShopFactory(name="Acme Outfitters", url="https://acme.example", support_email="help@acme.example",
                       postal_address="1 Main Street\nSpringfield, IL 62701")  # fmt: skip
    customer = CustomerFactory(email="ada@example.com", first_name="Ada", locale="en_US", timezone="America/Chicago")
    order = OrderFactory(shop=shop, customer=customer, number="#1042", status=OrderStatus.PAID, currency="USD",
                         subtotal=Decimal("176.00"), shipping_total=Decimal("9.95"), tax_total=Decimal("28.00"),
                         total=Decimal("213.94"))  # fmt: skip
    OrderLine.objects.create(order=order, position=1, name="Waxed canvas tote", sku="BAG-003", quantity=2,
                             price=Decimal("64.00"), total=Decimal("128.00"))  # fmt: skip
    OrderLine.objects.create(order=order, position=2, name="Organic cotton tee", sku="TEE-001", quantity=2,
                             price=Decimal("24.00"), total=Decimal("48.00"))  # fmt: skip
    return order


def nothing_written() -> tuple[int, int, int]:
    return Send.objects.count(), Message.objects.count(), PromoCode.objects.filter(issued_at__isnull=False).count()


# --- every page ------------------------------------------------------------------------


def test_a_superuser_opens_every_marketing_page(admin_client: Client, order: Order) -> None:
    campaign = create_campaign_from_starter(scenario="reminder", channel="email", shop=order.shop)
    PromoCode.objects.create(pool=campaign.promo_pool, code="BACK-0001-ABCD")
    customer = order.customer
    set_consent(customer=customer, channel="email", status="subscribed", source="shop", now=timezone.now())
    Send.objects.create(campaign=campaign, customer=customer, key="k1", channel="email", decision="blocked",
                        reason="not_active", detail="The campaign is draft.", decided_at=timezone.now())  # fmt: skip
    Suppression.objects.create(value="x@example.com", channel="email", reason="manual", created_at=timezone.now())
    tag_customer(customer=customer, tag_name="vip", source="staff:admin", now=timezone.now())
    ContactPoint.objects.create(customer=customer, channel="telegram", address="12345", created_at=timezone.now(),
                                updated_at=timezone.now())  # fmt: skip
    rows = {
        "campaign": campaign, "send": Send.objects.get(), "consent": Consent.objects.get(),
        "consentevent": ConsentEvent.objects.get(), "suppression": Suppression.objects.get(), "tag": Tag.objects.get(),
        "customertag": CustomerTag.objects.get(), "contactpoint": ContactPoint.objects.get(),
        "promopool": campaign.promo_pool, "promocode": PromoCode.objects.get(),
    }  # fmt: skip
    for model, row in rows.items():
        page(admin_client, url(f"{model}_changelist"))
        page(admin_client, url(f"{model}_change", row.pk))
    for model in ("campaign", "suppression", "tag", "customertag", "contactpoint", "promopool"):
        page(admin_client, url(f"{model}_add"))
    pool = campaign.promo_pool.pk
    extra = [url("campaign_starters"), url("campaign_preview", campaign.pk), url("campaign_send_test", campaign.pk),
             url("consent_record"), url("suppression_import"), url("promopool_import", pool),
             url("promopool_generate", pool)]  # fmt: skip
    for address in extra:
        page(admin_client, address)
    assert "Customers with recent orders" in page(admin_client, url("campaign_preview", campaign.pk))


def test_new_from_a_starter_creates_a_draft_and_opens_it(admin_client: Client, order: Order) -> None:
    listing = page(admin_client, url("campaign_starters"))
    assert 'value="order_confirmation/email"' in listing and 'value="reminder/sms"' in listing

    response = admin_client.post(url("campaign_starters"), {"starter": "order_confirmation/email", "shop": order.shop.pk})

    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == url("campaign_change", campaign.pk)
    assert (campaign.starter, campaign.status, campaign.sender_name) == ("order_confirmation/email", "draft", "Acme Outfitters")
    assert list(campaign.variants.values_list("name", flat=True)) == ["A"]
    assert admin_client.post(url("campaign_starters"), {"starter": "nope/email"}).status_code == 200
    assert Campaign.objects.count() == 1


# --- the preview -----------------------------------------------------------------------


def test_the_order_confirmation_preview_shows_the_real_order_and_writes_nothing(admin_client: Client, order: Order) -> None:
    campaign = create_campaign_from_starter(scenario="order_confirmation", channel="email", shop=order.shop)
    before = nothing_written()

    shown = page(admin_client, url("campaign_preview", campaign.pk), **{"preview-customer": "ADA@example.com",
                                                                        "preview-order": "1042"})  # fmt: skip

    assert "Your Acme Outfitters order #1042 is confirmed" in shown  # the subject
    assert "$213.94" in shown and "Waxed canvas tote" in shown
    assert re.search(r'<iframe sandbox="" srcdoc="&lt;meta http-equiv=&quot;Content-Security-Policy&quot; '
                     r"content=&quot;default-src &#x27;none&#x27;", admin_client.get(
                         url("campaign_preview", campaign.pk),
                         {"preview-customer": "ada@example.com", "preview-order_id": order.pk, "fragment": "1"},
                     ).content.decode())  # fmt: skip
    assert "sent the saved campaign now: Blocked Campaign not active: The campaign is draft." in text(shown)
    assert nothing_written() == before


def test_the_preview_peeks_at_a_promo_code_and_never_issues_it(admin_client: Client, order: Order) -> None:
    campaign = create_campaign_from_starter(scenario="reminder", channel="email", shop=order.shop)
    PromoCode.objects.create(pool=campaign.promo_pool, code="BACK-1234-WXYZ")

    shown = page(admin_client, url("campaign_preview", campaign.pk), **{"preview-customer": "ada@example.com"})

    assert "BACK-1234-WXYZ" in shown and "/u/" in shown  # the code, and the customer's real unsubscribe link
    assert PromoCode.objects.get().issued_at is None and nothing_written() == (0, 0, 0)


def test_a_broken_template_shows_the_template_problem_instead_of_the_preview(admin_client: Client, order: Order) -> None:
    campaign = make_campaign(activate=False, content={"subject": "Order {{ order.nubmer }}", "text_body": "Hi"})

    shown = page(admin_client, url("campaign_preview", campaign.pk),
                 **{"preview-customer": "ada@example.com", "preview-order": "#1042", "fragment": "1"})  # fmt: skip

    assert "Line 1 of the subject: 'order.nubmer' is not a variable you can use here. Did you mean 'order.number'?" in shown
    assert "<iframe" not in shown


def test_the_editor_preview_renders_what_is_typed_without_saving_it(admin_client: Client, order: Order) -> None:
    campaign = make_campaign(activate=False)
    variant = campaign.variants.get()
    posted = {
        "name": campaign.name, "profile": "transactional", "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "1",
        "variants-0-id": variant.pk, "variants-0-name": "A", "variants-0-subject": "Draft subject {{ order.number }}",
        "variants-0-text_body": "Thanks {{ recipient.first_name }}", "variants-1-name": "B",
        "variants-1-text_body": "{{ order.total_formatted }} for {{ shop.name }}",
        "preview-customer": "ada@example.com", "preview-order": "1042",
    }  # fmt: skip

    shown = html.unescape(admin_client.post(url("campaign_preview", campaign.pk) + "?fragment=1", posted).content.decode())

    assert "Draft subject #1042" in shown and "Thanks Ada" in shown
    assert "Variant B" in shown and "$213.94 for Acme Outfitters" in shown
    assert CampaignVariant.objects.get().subject == "Order {{ order.number }} confirmed"


def test_saving_a_template_that_cannot_be_read_is_refused_with_the_problem(admin_client: Client) -> None:
    campaign = make_campaign(activate=False)
    variant = campaign.variants.get()
    form = {
        "name": campaign.name, "channel": "email", "profile": "transactional", "sender_name": "Acme",
        "sender_address": "hello@acme.example", "control_percent": 0, "cap_policy": "drop", "defer_expiry_hours": 48,
        "variants-TOTAL_FORMS": 1, "variants-INITIAL_FORMS": 1, "variants-MIN_NUM_FORMS": 0, "variants-MAX_NUM_FORMS": 1000,
        "variants-0-id": variant.pk, "variants-0-campaign": campaign.pk, "variants-0-name": "A", "variants-0-weight": 1,
        "variants-0-subject": "Order {% if order.number %}{{ order.number }}", "variants-0-text_body": "Hi",
    }  # fmt: skip

    response = admin_client.post(url("campaign_change", campaign.pk), form)

    assert response.status_code == 200
    assert "Line 1 of the subject: the template cannot be read: Unexpected end of template." in html.unescape(
        response.content.decode()
    )
    assert CampaignVariant.objects.get().subject == "Order {{ order.number }} confirmed"
    form["variants-0-subject"] = "Order {{ order.number }} is in"
    assert admin_client.post(url("campaign_change", campaign.pk), form).status_code == 302
    assert CampaignVariant.objects.get().subject == "Order {{ order.number }} is in"


def test_an_unknown_customer_or_order_is_named_in_the_preview(admin_client: Client, order: Order) -> None:
    campaign = make_campaign(activate=False)
    address = url("campaign_preview", campaign.pk)
    assert "No customer has the email address, phone number or id 'bob@example.com'" in page(
        admin_client, address, **{"preview-customer": "bob@example.com"}
    )
    assert "has no order '9999'" in page(admin_client, address, **{"preview-customer": "ada@example.com", "preview-order": "9999"})


def test_previewing_a_customer_needs_the_permission_to_view_customers(order: Order) -> None:
    campaign = make_campaign(activate=False)
    user = User.objects.create_user("grace", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client = Client()
    client.force_login(user)
    address = url("campaign_preview", campaign.pk)
    asked = {"preview-customer": "ada@example.com", "preview-order": "1042"}
    assert client.get(address, asked).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_customer"))
    edited = {**asked, "variants-TOTAL_FORMS": "1", "variants-0-name": "A", "variants-0-subject": "Edited {{ shop.name }}"}
    shown = html.unescape(client.post(address + "?fragment=1", edited).content.decode())

    # A viewer sees the saved content: rendering what they post would be editing.
    assert "Order #1042 confirmed" in shown and "Edited" not in shown


# --- test sends ------------------------------------------------------------------------


def test_send_test_queues_a_ledger_message_marked_as_a_test(admin_client: Client, order: Order) -> None:
    campaign = create_campaign_from_starter(scenario="order_confirmation", channel="email", shop=order.shop)
    form = {"test-address": "qa@acme.example", "test-variant": campaign.variants.get().pk,
            "test-customer": "ada@example.com", "test-order": "#1042"}  # fmt: skip

    response = admin_client.post(url("campaign_send_test", campaign.pk), form)

    assert response.status_code == 302 and response["Location"] == url("campaign_change", campaign.pk)
    message = Message.objects.get()
    assert message.subject == "[TEST] Your Acme Outfitters order #1042 is confirmed"
    assert message.address == "qa@acme.example" and message.idempotency_key.startswith("test:")
    assert message.data["test"] is True and "$213.94" in message.html and "list_unsubscribe_url" not in message.data
    assert Send.objects.count() == 0
    assert f"queued to qa@acme.example as message #{message.pk}" in text(notes(response)[0])


def test_send_test_refuses_an_address_that_is_not_one(admin_client: Client, order: Order) -> None:
    campaign = make_campaign(channel="sms", profile="transactional", activate=False)
    form = {"test-address": "not a number", "test-variant": campaign.variants.get().pk, "test-customer": "ada@example.com"}

    shown = html.unescape(admin_client.post(url("campaign_send_test", campaign.pk), form).content.decode())

    assert "Enter a valid phone number with its country code" in shown and Message.objects.count() == 0


# --- activation and archiving ------------------------------------------------------------


def test_activation_is_refused_with_the_exact_problem_shown(admin_client: Client) -> None:
    campaign = make_campaign(channel="sms", profile="marketing", activate=False, content={"text_body": "20% off today"})

    response = admin_client.post(url("campaign_activate", campaign.pk), follow=True)

    shown = notes(response)
    assert shown[0] == f"{campaign.name} was not activated: 1 problem to fix first."
    assert 'Variant A: the message has no opt-out line. Add one such as "Reply STOP to opt out".' in shown
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_a_warning_must_be_accepted_on_the_confirm_page_before_activation(admin_client: Client) -> None:
    content = {"subject": "Order {{ order.number }}", "text_body": "Thanks! Use coupon SAVE10 next time."}
    campaign = make_campaign(activate=False, content=content)

    response = admin_client.post(url("campaign_activate", campaign.pk))
    assert response.status_code == 302 and response["Location"] == url("campaign_confirm", campaign.pk)
    confirm = page(admin_client, url("campaign_confirm", campaign.pk))
    assert 'Variant A: this transactional message carries a promotion (the text body says "coupon")' in confirm
    shown = re.search(r'name="shown" value="(\w+)"', confirm).group(1)
    refused = html.unescape(admin_client.post(url("campaign_confirm", campaign.pk), {"shown": shown}).content.decode())
    assert "Tick the box to accept the warnings" in refused
    stale = html.unescape(admin_client.post(url("campaign_confirm", campaign.pk), {"accept": "on", "shown": "x"}).content.decode())
    assert "The warnings changed since this page was opened" in stale
    campaign.refresh_from_db()
    assert campaign.status == "draft"

    admin_client.post(url("campaign_confirm", campaign.pk), {"accept": "on", "shown": shown})

    campaign.refresh_from_db()
    assert (campaign.status, campaign.promo_warning_accepted) == ("active", True)


def test_archive_stops_the_campaign(admin_client: Client) -> None:
    campaign = make_campaign()
    admin_client.post(url("campaign_archive", campaign.pk))
    campaign.refresh_from_db()
    assert campaign.status == "archived"


# --- what the campaign did ------------------------------------------------------------


def sent(campaign: Campaign, variant: CampaignVariant, key: str, *, opened: bool = False, clicked: bool = False) -> Send:
    customer = CustomerFactory()
    message = send_message(kind="email", address=customer.email, idempotency_key=f"send:{key}", text="Hi")
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(opened_at=now if opened else None, clicked_at=now if clicked else None)
    return Send.objects.create(campaign=campaign, variant=variant, customer=customer, key=key, channel="email",
                               decision="sent", message=message, decided_at=now - timedelta(hours=1))  # fmt: skip


def blocked(campaign: Campaign, variant: CampaignVariant | None, key: str, reason: str, detail: str = "") -> Send:
    return Send.objects.create(campaign=campaign, variant=variant, customer=CustomerFactory(), key=key, channel="email",
                               decision="blocked", reason=reason, detail=detail,
                               decided_at=timezone.now() - timedelta(hours=2))  # fmt: skip


def test_variant_stats_and_blocked_reasons_count_the_sends(admin_client: Client, order: Order) -> None:
    campaign = make_campaign(control_percent=10)
    a = campaign.variants.get()
    b = CampaignVariant.objects.create(campaign=campaign, name="B", subject="Hi", text_body="Hello")
    won = sent(campaign, a, "a1", opened=True, clicked=True)
    sent(campaign, a, "a2", opened=True)
    sent(campaign, b, "b1")
    blocked(campaign, a, "a3", "never_subscribed", "Never subscribed to this channel.")
    blocked(campaign, b, "b2", "suppressed", "bounced@example.com is on the suppression list (hard bounce).")
    blocked(campaign, b, "b3", "suppressed")
    held_out = blocked(campaign, None, "c1", "control_group")
    blocked(campaign, None, "c2", "control_group")
    Conversion.objects.create(order=order, send=won, touch="click", touched_at=timezone.now(), revenue=Decimal("213.94"),
                              currency="USD", attributed_at=timezone.now())  # fmt: skip
    OrderFactory(customer=held_out.customer, placed_at=timezone.now(), total=Decimal("50.00"))

    response = admin_client.get(url("campaign_change", campaign.pk))

    rows = {row.label: row for row in response.context["variant_rows"]}
    row_a, row_b, control = rows["Variant A"], rows["Variant B"], rows["Control group (held out)"]
    assert (row_a.sent, row_a.blocked, row_a.opened, row_a.clicked, row_a.conversions) == (
        2, {"never_subscribed": 1}, 2, 1, 1)  # fmt: skip
    assert row_a.revenue_words == "$213.94" and row_a.conversion_rate == "50.0%"
    assert (row_b.sent, row_b.blocked, row_b.opened) == (1, {"suppressed": 2}, 0)
    assert control.blocked == {"control_group": 2}
    lift = response.context["lift"]
    assert (lift.treated, lift.control, lift.control_ordered) == (3, 2, 1)
    shown = html.unescape(response.content.decode())
    assert "Suppressed address: 2" in shown and "bounced@example.com is on the suppression list (hard bounce)." in shown
    blocked_list = url("send_changelist") + f"?campaign__id__exact={campaign.pk}&decision__exact=blocked"
    assert blocked_list + "&reason__exact=suppressed" in shown
    assert page(admin_client, blocked_list + "&reason__exact=suppressed").count('class="field-decided_at') == 2


def test_the_campaign_list_counts_sends_and_revenue_without_a_query_per_campaign(admin_client: Client, order: Order) -> None:
    def listing() -> tuple[str, int]:
        with CaptureQueriesContext(connection) as queries:
            shown = page(admin_client, url("campaign_changelist"))
        return shown, len(queries)

    first = make_campaign(name="First")
    won = sent(first, first.variants.get(), "f1")
    blocked(first, None, "f2", "not_active")
    Conversion.objects.create(order=order, send=won, touch="send", touched_at=timezone.now(), revenue=Decimal("213.94"),
                              currency="USD", attributed_at=timezone.now())  # fmt: skip
    shown, few = listing()
    for n in range(4):
        make_campaign(name=f"Other {n}")
    _, many = listing()

    assert many == few
    assert re.search(r"First</a></th>.*?>1<.*?>1<.*?>1<.*?\$213\.94", shown.replace("\n", ""))


def test_the_send_list_filters_and_links_the_ledger_message(admin_client: Client) -> None:
    campaign = make_campaign()
    one = sent(campaign, campaign.variants.get(), "s1")
    blocked(campaign, None, "s2", "not_active")

    shown = page(admin_client, url("send_changelist"), q=one.customer.email)

    assert reverse("admin:channels_message_change", args=[one.message_id]) in shown
    assert shown.count('class="field-decided_at') == 1


# --- audience ------------------------------------------------------------------------------


def test_suppression_csv_import_keeps_good_rows_and_names_the_bad_line(admin_client: Client) -> None:
    csv = b"value,channel,reason\nAda@Example.COM,email,\nnot-an-email,email,\n+1 202 555 0143,sms,complaint\n"
    upload = SimpleUploadedFile("list.csv", csv, content_type="text/csv")

    response = admin_client.post(url("suppression_import"), {"file": upload, "reason": "import"}, follow=True)

    shown = notes(response)
    assert shown[0] == "Suppression import: 2 added, 0 already on the list, 1 refused."
    assert shown[1].startswith("Line 3 (not-an-email,email,): 'not-an-email' is not an email address")
    assert set(Suppression.objects.values_list("value", "channel", "reason")) == {
        ("ada@example.com", "email", "import"), ("+12025550143", "sms", "complaint")}  # fmt: skip


def test_a_suppression_added_by_hand_is_stored_normalised(admin_client: Client) -> None:
    admin_client.post(url("suppression_add"), {"value": " Ada@Example.COM ", "channel": "email", "detail": ""})
    row = Suppression.objects.get()
    assert (row.value, row.reason, row.detail) == ("ada@example.com", "manual", "Added by admin")

    again = html.unescape(admin_client.post(url("suppression_add"), {"value": "ADA@example.com", "channel": "email"}).content.decode())

    assert "ada@example.com is already on the list (added by staff)." in again and Suppression.objects.count() == 1


def test_a_staff_consent_change_goes_through_set_consent_and_is_recorded(admin_client: Client, order: Order) -> None:
    form = {"customer": "ada@example.com", "channel": "sms", "status": "unsubscribed", "note": "asked by phone"}

    response = admin_client.post(url("consent_record"), form, follow=True)

    consent = Consent.objects.get()
    event = ConsentEvent.objects.get()
    assert (consent.status, consent.source) == ("unsubscribed", "staff")
    assert (event.old_status, event.new_status, event.source, event.detail) == (
        "never_asked", "unsubscribed", "staff", "By admin: asked by phone")  # fmt: skip
    assert "is now unsubscribed" in notes(response)[0]
    assert "By admin: asked by phone" in page(admin_client, url("consent_change", consent.pk))


def test_tagging_from_the_admin_records_the_staff_member(admin_client: Client, order: Order) -> None:
    admin_client.post(url("customertag_add"), {"customer": order.customer.pk, "tag_name": "VIP Customer"})
    row = CustomerTag.objects.select_related("tag").get()
    assert (row.tag.name, row.source) == ("vip-customer", "staff:admin")

    admin_client.post(url("customertag_delete", row.pk), {"post": "yes"})

    assert not CustomerTag.objects.exists() and Tag.objects.filter(name="vip-customer").exists()


def test_a_web_push_contact_point_must_be_a_usable_subscription(admin_client: Client, order: Order) -> None:
    form = {"customer": order.customer.pk, "channel": "web_push", "address": '{"endpoint": "https://push.example/x"}',
            "is_valid": "on"}  # fmt: skip
    refused = html.unescape(admin_client.post(url("contactpoint_add"), form).content.decode())
    assert "This web push subscription is unusable: it has no keys.p256dh and keys.auth" in refused

    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    form["address"] = f'{{"endpoint": "https://push.example/x", "keys": {{"p256dh": "{b64(key)}", "auth": "{b64(b"0" * 16)}"}}}}'
    admin_client.post(url("contactpoint_add"), form)

    assert ContactPoint.objects.get().channel == "web_push"


# --- promo codes -----------------------------------------------------------------------------


def test_promo_codes_are_imported_and_generated(admin_client: Client) -> None:
    pool = PromoPool.objects.create(name="Welcome", slug="welcome", pattern="WELCOME-####")
    upload = SimpleUploadedFile("codes.csv", b"code\nAAA-1\nBBB-2\nAAA-1\n", content_type="text/csv")

    imported = admin_client.post(url("promopool_import", pool.pk), {"file": upload}, follow=True)
    generated = admin_client.post(url("promopool_generate", pool.pk), {"count": 5}, follow=True)

    assert notes(imported) == ["Welcome: 2 codes added, 1 already in the pool."]
    assert notes(generated) == ["Welcome: 5 codes generated from WELCOME-####."]
    assert PromoCode.objects.filter(pool=pool, code__regex=r"^WELCOME-\d{4}$").count() == 5
    assert re.search(r">7</a></td><td class=\"field-issued_codes\"><a [^>]*>0<", page(admin_client, url("promopool_changelist")))
    plain = PromoPool.objects.create(name="Plain", slug="plain")
    refused = html.unescape(admin_client.post(url("promopool_generate", plain.pk), {"count": 5}).content.decode())
    assert "The pool needs a pattern with # (digit) or ? (letter)" in refused
