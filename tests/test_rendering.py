"""The sandboxed rendering of campaign templates and the context it renders from."""

from __future__ import annotations

import types
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import models

from marketing.context import build_context
from marketing.models import Campaign, CampaignVariant, CustomerTag, PromoPool, Tag
from marketing.rendering import (
    TemplateProblem,
    check_template,
    render_html,
    render_text,
    render_variant,
    template_variables,
)
from orders.models import Order, OrderLine
from tests.factories import CustomerFactory, OrderFactory, ShopFactory

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
SECRET = "do-not-leak-this-secret-0d6f"


@pytest.fixture
def order(db: None) -> Order:
    shop = ShopFactory(
        name="Acme Outfitters",
        url="https://acme.example",
        support_email="help@acme.example",
        postal_address="1 Main Street\nSpringfield, IL 62701",
        timezone="America/New_York",
    )
    customer = CustomerFactory(first_name="Ada", last_name="Lovelace", locale="en-US", timezone="America/Los_Angeles")
    order = OrderFactory(
        shop=shop,
        customer=customer,
        number="#1042",
        currency="USD",
        subtotal=Decimal("176.00"),
        discount_total=Decimal("10.00"),
        shipping_total=Decimal("9.95"),
        tax_total=Decimal("37.99"),
        total=Decimal("213.94"),
        # 03:30 UTC is still the evening before in Los Angeles.
        placed_at=datetime(2026, 11, 6, 3, 30, tzinfo=UTC),
        shipping_address={"name": "Ada Lovelace", "address1": "12 St James's Square", "city": "London"},
    )
    for position, (name, sku, price) in enumerate([("Waxed canvas tote", "BAG-003", "64.00"),
                                                   ("Organic cotton tee", "TEE-001", "24.00")], start=1):
        OrderLine.objects.create(order=order, position=position, name=name, sku=sku, quantity=Decimal("2.000"),
                                 price=Decimal(price), total=Decimal(price) * 2)
    return order


def context_for(order: Order, **kwargs: Any) -> dict[str, Any]:
    return build_context(customer=order.customer, shop=order.shop, order=order, now=NOW, **kwargs)


def render(source: str, context: dict[str, Any] | None = None) -> str:
    return render_text(source, context or {}, name="the text")


# --- Mistakes a marketer makes ----------------------------------------------------------


def test_misspelt_variable_names_the_line_and_suggests_the_right_one(order: Order) -> None:
    variant = CampaignVariant(html_body="<p>Hello</p>\n<p>Thanks!</p>\n<p>{{ ordr.number }}</p>")
    with pytest.raises(TemplateProblem) as caught:
        render_variant(variant, context_for(order))
    assert str(caught.value) == (
        "Line 3 of the HTML body: 'ordr' is not a variable you can use here. Did you mean 'order'?"
    )
    assert (caught.value.line, caught.value.kind) == (3, "undefined")


def test_misspelt_field_suggests_the_field_of_that_variable(order: Order) -> None:
    variant = CampaignVariant(subject="Order {{ order.nmber }}")
    with pytest.raises(TemplateProblem) as caught:
        render_variant(variant, context_for(order))
    assert str(caught.value) == (
        "Line 1 of the subject: 'order.nmber' is not a variable you can use here. Did you mean 'order.number'?"
    )


def test_syntax_error_gives_the_line_in_plain_words() -> None:
    with pytest.raises(TemplateProblem) as caught:
        check_template("Hi\n{% if recipient.first_name %}\nthere", name="the text")
    assert caught.value.line == 3 and caught.value.kind == "syntax"
    assert str(caught.value).startswith("Line 3 of the text: the template cannot be read: Unexpected end of template")
    assert "'endif'" in str(caught.value)


def test_unknown_filter_suggests_the_nearest_filter() -> None:
    with pytest.raises(TemplateProblem) as caught:
        render("{{ 3|monye }}")
    assert str(caught.value) == "Line 1 of the text: there is no filter called 'monye'. Did you mean 'money'?"


def test_error_in_a_whatsapp_parameter_names_that_parameter(order: Order) -> None:
    variant = CampaignVariant(template_parameters=["recipient.first_name", "Order {{ order.totl }}"])
    with pytest.raises(TemplateProblem) as caught:
        render_variant(variant, context_for(order))
    assert str(caught.value).startswith("Line 1 of WhatsApp parameter 2: 'order.totl' is not a variable")


def test_a_line_of_only_tags_vanishes_but_an_inline_tag_keeps_its_newline() -> None:
    source = (
        "Hi{% if name %} {{ name }}{% endif %}\n"
        "{% for i in [1, 2] %}\n  {% if i %}\n- {{ i }}\n  {% endif %}\n{% endfor %}\n"
        "Bye"
    )
    assert render(source, {"name": "Ada"}) == "Hi Ada\n- 1\n- 2\nBye"
    with pytest.raises(TemplateProblem) as caught:
        render("{% if 1 %}\n{% for i in [1] %}\n{{ nope }}\n{% endfor %}\n{% endif %}")
    assert caught.value.line == 3


def test_whatsapp_parameters_are_expressions_or_small_templates(order: Order) -> None:
    parameters = ["recipient.first_name", "{{ order.number }}\n({{ order.total_formatted }})"]
    variant = CampaignVariant(template_parameters=parameters)
    assert render_variant(variant, context_for(order)).template_parameters == ["Ada", "#1042 ($213.94)"]


def test_oversized_template_is_refused_before_rendering() -> None:
    with pytest.raises(TemplateProblem) as caught:
        render("x" * (100 * 1024 + 1))
    assert caught.value.kind == "size"
    assert str(caught.value) == "In the text: the template is longer than 100 kB; shorten it."


# --- The sandbox holds ------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ 'a'.format.__globals__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ order|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ recipient.recommendations.__globals__ }}",
    "{{ joiner.__init__.__globals__['__builtins__'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ (order.lines|first).__class__ }}",
    "{{ 'x'.encode('utf-8') }}",
    # Class methods reach past the data: the real clock instead of the send's time.
    "{{ order.placed_at.now() }}",
    "{{ order.placed_at.fromtimestamp(0) }}",
    "{% for x in range(10**9) %}x{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_known_sandbox_escapes_fail_safely(order: Order, source: str, settings: Any) -> None:
    settings.SECRET_KEY = SECRET
    with pytest.raises(TemplateProblem) as caught:
        render(source, context_for(order))
    assert caught.value.kind in {"security", "loop"}
    assert SECRET not in str(caught.value)


def test_str_format_is_refused_but_printf_formatting_works() -> None:
    assert render("{{ '%.2f' % 3.14159 }} {{ '%s!'|format('hi') }}") == "3.14 hi!"
    with pytest.raises(TemplateProblem) as caught:
        render("{{ '{}'.format(1) }}")
    assert str(caught.value) == "Line 1 of the text: that is not allowed in a template."


@pytest.mark.parametrize(
    "source",
    [
        "{% include 'base.html' %}",
        "{% import 'macros.html' as m %}",
        "{% from 'macros.html' import button %}",
        "Hi\n{% extends 'layout.html' %}",
        "{% block b %}{% endblock %}{{ self.b() }}",
    ],
)
def test_templates_cannot_reach_other_templates_or_blocks(source: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(source)
    assert caught.value.kind == "security"
    assert "cannot include, import or extend another template" in str(caught.value) or "'self'" in str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ '' }}{% endfor %}{% endfor %}",
        # No call or attribute inside: the check in every loop body still stops it.
        "{% set xs = range(10000)|list %}{% for a in xs %}{% for b in xs %}{% for c in xs %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{% macro deep(n) %}{% for i in range(100) %}{{ deep(n + 1) if n < 6 }}{% endfor %}{% endmacro %}{{ deep(0) }}",
    ],
)
def test_endless_work_stops_at_the_deadline(source: str, settings: Any) -> None:
    settings.HERALD_TEMPLATE_DEADLINE_SECONDS = 0.2
    with pytest.raises(TemplateProblem) as caught:
        render(source)
    assert caught.value.kind == "deadline"
    assert "took longer than 0.2 s to render (a very long loop?)" in str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10000000 }}",
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set s = 'x' * 400000 %}{{ (s ~ s ~ s)|length }}",
        "{% macro m() %}{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "{% set s = 'x' * 400000 %}{{ [s, s, s]|join }}",
        "{{ 'ab'.replace('', 'x' * 400000) }}",
        "{{ 'x'|center(10**9) }}",
        "{{ (1).to_bytes(10**9, 'big') }}",
    ],
)
def test_output_bombs_stop_at_the_output_limit(source: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(source)
    assert caught.value.kind == "output"
    assert "larger than 512 kB" in str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 2 ** 100000 }}",
        "{{ (2 ** 9999) * (2 ** 9999) }}",
        "{{ '%0999999999d' % 1 }}",
        # Converting a Decimal with 500,000 digits to int takes seconds in one call.
        "{{ order.total.scaleb(500000)|int }}",
        "{{ (order.total ** 400000)|int }}",
    ],
)
def test_huge_numbers_and_format_widths_are_refused(order: Order, source: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        render(source, context_for(order))
    assert caught.value.kind == "output"


def test_arithmetic_mistakes_are_explained(order: Order) -> None:
    assert render("{{ order.total * 2 - order.discount }} {{ 7 // 2 }}", context_for(order)) == "417.88 3"
    with pytest.raises(TemplateProblem) as caught:
        render("{{ order.total / (order.tax - order.tax) }}", context_for(order))
    assert str(caught.value) == "Line 1 of the text: this divides by zero."


def test_html_body_escapes_the_customer_name_and_text_does_not(order: Order) -> None:
    order.customer.first_name = "<script>alert(1)</script>"
    order.customer.save()
    variant = CampaignVariant(
        html_body="<p>Hi {{ recipient.first_name }}</p>", text_body="Hi {{ recipient.first_name }}"
    )
    rendered = render_variant(variant, context_for(order))
    assert rendered.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert rendered.text == "Hi <script>alert(1)</script>"
    assert render_html("{{ recipient.first_name }}", context_for(order)) == "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_subject_and_title_come_out_on_one_line_and_preheader_goes_into_the_html(order: Order) -> None:
    variant = CampaignVariant(
        subject="Order {{ order.number }}\n  is\n confirmed",
        title="Hello\n{{ recipient.first_name }}",
        preheader="Arriving {{ order.delivery_estimate|date }}",
        html_body="<html><body><p>Hi</p></body></html>",
    )
    rendered = render_variant(variant, context_for(order))
    assert rendered.subject == "Order #1042 is confirmed"
    assert rendered.title == "Hello Ada"
    assert rendered.html.startswith('<html><body><div style="display:none;')
    assert "Arriving Nov 12, 2026" in rendered.html


# --- Money and dates --------------------------------------------------------------------


def test_money_is_written_for_the_order_currency_and_customer_locale(order: Order) -> None:
    assert context_for(order)["order"]["total_formatted"] == "$213.94"
    order.currency = "EUR"
    order.save()
    order.customer.locale = "de_DE"
    order.customer.save()
    context = context_for(order)
    assert context["order"]["total_formatted"] == "213,94\xa0€"
    assert render("{{ order.total|money }} {{ order.lines[0].price|money }}", context) == "213,94\xa0€ 64,00\xa0€"


def test_yen_has_no_minor_units(order: Order) -> None:
    order.currency = "JPY"
    order.total = Decimal("2139")
    order.save()
    context = context_for(order)
    assert context["order"]["total_formatted"] == "¥2,139"
    assert render("{{ 2139|money('JPY') }}", context) == "¥2,139"


def test_dates_are_shown_in_the_customer_time_zone(order: Order) -> None:
    context = context_for(order)
    assert render("{{ order.placed_at|date('long') }}", context) == "November 5, 2026"
    assert render("{{ order.placed_at|datetime('HH:mm') }}", context) == "19:30"
    order.customer.timezone = ""
    order.customer.save()
    assert render("{{ order.placed_at|datetime('HH:mm') }}", context_for(order)) == "22:30"


def test_add_days_keeps_the_local_time_across_a_dst_change(order: Order) -> None:
    order.customer.timezone = "America/New_York"
    order.customer.save()
    context = build_context(customer=order.customer, shop=order.shop, now=datetime(2026, 10, 30, 16, tzinfo=UTC))
    # 12:00 EDT on 30 October; a week later New York is on EST and it is still 12:00.
    assert render("{{ message.sending_datetime|add_days(7)|datetime('d MMM y HH:mm') }}", context) == "6 Nov 2026 12:00"


def test_delivery_estimate_counts_business_days_from_the_local_order_date(order: Order, settings: Any) -> None:
    # Placed Thursday 5 November in Los Angeles: five business days is Thursday 12th.
    assert context_for(order)["order"]["delivery_estimate"] == date(2026, 11, 12)
    settings.HERALD_DELIVERY_BUSINESS_DAYS = {"default": 5, order.shop.slug: 2}
    assert context_for(order)["order"]["delivery_estimate"] == date(2026, 11, 9)


# --- The context --------------------------------------------------------------------------

PLAIN = (dict, list, str, int, Decimal, datetime, date, bool, type(None), types.FunctionType)


def _walk(value: Any, path: str = "") -> list[tuple[str, type]]:
    found = [(path, type(value))]
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), path
            found += _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _walk(item, f"{path}[{index}]")
    return found


def test_context_holds_only_plain_data(order: Order) -> None:
    tag = Tag.objects.create(name="vip")
    CustomerTag.objects.create(customer=order.customer, tag=tag, source="staff:ann", created_at=NOW)
    context = context_for(order, event={"kind": "order_created", "order": order, "when": NOW, "ids": (1, 2)})
    for path, kind in _walk(context):
        assert issubclass(kind, PLAIN), f"{path} is a {kind.__name__}"
        assert not issubclass(kind, models.Model), path
    assert context["recipient"]["tags"] == ["vip"]
    assert context["event"]["order"] == "Order #1042 (" + order.shop.slug + ")"
    assert context["order"]["lines"][0]["quantity"] == Decimal("2")
    assert "webhook_secret" not in str(context) and "test-secret" not in str(context)


def test_context_without_a_shop_uses_the_order_shop_or_stays_empty(order: Order) -> None:
    with_order = build_context(customer=order.customer, shop=None, order=order, now=NOW)
    assert with_order["shop"]["name"] == "Acme Outfitters"
    order.customer.timezone = ""
    bare = build_context(customer=order.customer, shop=None, now=NOW)
    assert bare["shop"] == {"name": "", "url": "", "support_email": "", "postal_address": "", "currency": ""}
    assert (bare["recipient"]["timezone"], bare["recipient"]["locale"]) == ("UTC", "en_US")
    assert "order" not in bare


def test_recommendations_are_capped_asked_once_and_empty_without_a_source(order: Order) -> None:
    calls: list[tuple[str, int]] = []

    def recommend(algorithm: str, limit: int) -> list[dict[str, Any]]:
        calls.append((algorithm, limit))
        return [{"name": f"Product {n}", "url": f"https://acme.example/p/{n}", "image_url": "", "price": "9.5"}
                for n in range(limit)]

    source = "{% for i in range(50) %}{{ recipient.recommendations('popular', 50)|length }} {% endfor %}"
    assert render(source, context_for(order, recommend=recommend)).split()[0] == "12"
    assert calls == [("popular", 12)]
    context = context_for(order, recommend=recommend)
    assert render("{{ (recipient.recommendations()|first).price_formatted }}", context) == "$9.50"
    assert render("{{ recipient.recommendations()|length }}", context_for(order)) == "0"

    def unknown(algorithm: str, limit: int) -> list[dict[str, Any]]:
        raise ValueError(f"There is no recommendation algorithm {algorithm!r}.")

    with pytest.raises(TemplateProblem) as caught:
        render("{{ recipient.recommendations('trending') }}", context_for(order, recommend=unknown))
    assert str(caught.value) == "Line 1 of the text: There is no recommendation algorithm 'trending'."


def test_promo_code_comes_from_the_send_and_a_wrong_pool_is_explained(order: Order) -> None:
    pool = PromoPool.objects.create(name="Come back", slug="comeback")
    campaign = Campaign.objects.create(name="Reminder", channel="email", profile="marketing", promo_pool=pool)
    source = "{{ recipient.last_received_promo_code('comeback') }}"
    assert render(source, context_for(order, campaign=campaign, promo_codes={"comeback": "BACK-7Q2X"})) == "BACK-7Q2X"
    with pytest.raises(TemplateProblem) as caught:
        render("Code:\n{{ recipient.last_received_promo_code('welcome10') }}", context_for(order, campaign=campaign))
    assert str(caught.value) == "Line 2 of the text: the campaign's promo pool is 'comeback', not 'welcome10'"
    assert caught.value.kind == "context"


def test_template_variables_lists_names_and_attribute_paths() -> None:
    source = (
        "{{ shop.name }} {{ message['unsubscribe_url'] }}{% for line in order.lines %}{{ line.name }}{% endfor %}"
        "{{ recipient.last_received_promo_code('x') }}{% set y = 1 %}{{ y }}"
    )
    assert template_variables(source) == {
        "shop", "shop.name", "message", "message.unsubscribe_url", "order", "order.lines",
        "recipient", "recipient.last_received_promo_code",
    }
