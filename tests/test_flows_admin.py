"""The flows admin: staff build, edit, activate and publish flows, and read runs."""

from __future__ import annotations

import html
import sys
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flows import engine
from flows.actions import check_flow, draft_version
from flows.events import FlowEvent
from flows.models import (
    DelayWait,
    EndStep,
    Flow,
    FlowRun,
    OrderStatusCondition,
    SendCampaignStep,
    SkippedEntry,
    SplitStep,
    StepLog,
)
from marketing.models import Campaign, Send
from tests.factories import CustomerFactory, OrderFactory, ShopFactory
from tests.flow_helpers import add_steps, make_flow

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- reading pages the way a browser does ---------------------------------------


class FormReader(HTMLParser):
    """The fields a browser would submit from the page's main form, and the empty form
    of each step type that the admin's JavaScript copies when staff add a step."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.in_form = False
        self.fields: list[tuple[str, str]] = []
        self.empty: dict[str, list[tuple[str, str]]] = {}
        self.divs: list[str | None] = []
        self.select: tuple[str, list[tuple[str, bool]], bool] | None = None
        self.textarea: list[str] | None = None

    def _add(self, name: str, value: str) -> None:
        owner = next((kind for kind in reversed(self.divs) if kind), None)
        if owner:
            self.empty.setdefault(owner, []).append((name, value))
        elif "__prefix__" not in name:
            self.fields.append((name, value))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.in_form = True
        if not self.in_form:
            return
        if tag == "div":
            ident = a.get("id", "")
            self.divs.append(ident.removesuffix("-empty") if ident.endswith("-empty") else None)
        elif tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self._add(a["name"], a.get("value", "on" if a.get("type") == "checkbox" else ""))
        elif tag == "select":
            self.select = (a["name"], [], "multiple" in a)
        elif tag == "option" and self.select is not None:
            self.select[1].append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self.textarea = [a["name"]]

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self.in_form:
            return
        if tag == "form":
            self.in_form = False
        elif tag == "div" and self.divs:
            self.divs.pop()
        elif tag == "select" and self.select is not None:
            name, options, multiple = self.select
            chosen = [value for value, selected in options if selected]
            if not chosen and options and not multiple:
                chosen = [options[0][0]]  # what a browser submits for a select left alone
            for value in chosen:
                self._add(name, value)
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            self._add(self.textarea[0], "".join(self.textarea[1:]).removeprefix("\n"))
            self.textarea = None


class StepEditor:
    """The draft version's page as a browser holds it: change fields, add rows, post."""

    def __init__(self, client: Client, version_pk: int) -> None:
        self.client = client
        self.url = reverse("admin:flows_flowversion_change", args=[version_pk])
        response = client.get(self.url)
        assert response.status_code == 200
        reader = FormReader("flowversion_form")
        reader.feed(response.content.decode())
        self.data: dict[str, list[str]] = {}
        for name, value in reader.fields:
            self.data.setdefault(name, []).append(value)
        self.empty = reader.empty

    def set(self, name: str, *values: str) -> None:
        self.data[name] = list(values)

    def row_of(self, key: str) -> str:
        """The field prefix of the existing step with this key."""
        name = next(n for n, v in self.data.items() if n.endswith("-key") and v == [key])
        return name.removesuffix("-key")

    def add(self, step_type: str, **values: str | list[str]) -> str:
        """Add a row of a step type from its empty form, as the admin's script does."""
        index = int(self.data["steps-TOTAL_FORMS"][0])
        prefix = f"steps-{index}"
        for name, value in self.empty[step_type]:
            self.data.setdefault(name.replace("__prefix__", str(index)), []).append(value)
        for field, value in values.items():
            self.data[f"{prefix}-{field}"] = value if isinstance(value, list) else [value]
        self.data["steps-TOTAL_FORMS"] = [str(index + 1)]
        return prefix

    def save(self):  # type: ignore[no-untyped-def]
        return self.client.post(self.url, self.data)


def text(response) -> str:  # type: ignore[no-untyped-def]
    return html.unescape(response.content.decode())


def notes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def keys(version) -> list[str]:  # type: ignore[no-untyped-def]
    return [step.key for step in version.ordered_steps()]


def order_event(order, event_id: str = "e1") -> FlowEvent:  # type: ignore[no-untyped-def]
    return FlowEvent("new_order", event_id, order.placed_at, order.customer, order, order.shop)


def waiting_run(flow: Flow) -> FlowRun:
    """A run that did its first steps and now waits."""
    [run] = engine.start_runs(event=order_event(OrderFactory(placed_at=NOW)), now=NOW)
    engine.advance_run(run_id=run.pk, now=NOW)
    run.refresh_from_db()
    assert run.status == "waiting"
    return run


def run_with(flow: Flow, status: str, **fields) -> FlowRun:  # type: ignore[no-untyped-def]
    customer = fields.pop("customer", None) or CustomerFactory()
    return FlowRun.objects.create(
        flow=flow, version=flow.current_version, customer=customer, dedupe_key=f"customer:{customer.pk}",
        status=status, started_at=NOW, **fields,
    )  # fmt: skip


def waiting_flow(**fields) -> Flow:  # type: ignore[no-untyped-def]
    steps = [
        (OrderStatusCondition, {"key": "paid", "statuses": ["paid"]}),
        (DelayWait, {"key": "wait", "minutes": 60}),
        (EndStep, {"key": "finish"}),
    ]
    return make_flow(steps=steps, now=NOW, **fields)


# --- the flow list and page ------------------------------------------------------


def test_the_flow_list_counts_runs_by_status_in_one_query(admin_client):
    welcome = waiting_flow(name="Welcome")
    for status in ["active", "waiting", "waiting", "completed", "completed", "completed", "failed"]:
        run_with(welcome, status)
    make_flow(name="Draft one", steps=[(EndStep, {"key": "end"})], live=False)
    url = reverse("admin:flows_flow_changelist")

    page = text(admin_client.get(url))
    assert "Welcome" in page and "Draft one" in page
    assert f'href="/admin/flows/flowrun/?flow__id__exact={welcome.pk}&status__exact=waiting">2</a>' in page
    assert f'href="/admin/flows/flowrun/?flow__id__exact={welcome.pk}&status__exact=completed">3</a>' in page
    assert "none published" in page  # the draft flow

    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for index in range(5):
        run_with(waiting_flow(name=f"More {index}"), "waiting")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(url)
    assert len(many) == len(few)


def test_the_flow_list_filters_by_status_and_trigger(admin_client):
    waiting_flow(name="Live order flow")
    make_flow(name="Draft customer flow", trigger="new_customer", steps=[(EndStep, {"key": "end"})], live=False)
    url = reverse("admin:flows_flow_changelist")
    live = text(admin_client.get(url, {"status__exact": "live"}))
    assert "Live order flow" in live and "Draft customer flow" not in live
    customers = text(admin_client.get(url, {"trigger__exact": "new_customer"}))
    assert "Draft customer flow" in customers and "Live order flow" not in customers


def test_the_flow_page_shows_the_draft_steps_beside_the_published_ones(admin_client):
    flow = waiting_flow()
    draft = draft_version(flow=flow)
    add_steps(draft, [(SplitStep, {"key": "split", "paths": [{"name": "A", "weight": 1, "goto": "finish"}]})])
    draft.steps.filter(key="split").update(position=25)

    page = text(admin_client.get(reverse("admin:flows_flow_change", args=[flow.pk])))
    assert "Draft v2: being edited" in page
    assert "Published v1: live" in page
    assert "A (weight 1) \u2192 finish" in page  # the draft's new step, read back in words
    assert f'href="/admin/flows/flowversion/{draft.pk}/change/">Edit steps (draft v2)</a>' in page
    assert "Pause" in page and "Activate</button>" not in page


def test_the_flow_settings_store_the_ticked_statuses_as_a_list(admin_client):
    url = reverse("admin:flows_flow_add")
    form = {
        "name": "Shipping updates", "trigger": "order_status_changed", "to_statuses": ["shipped", "delivered"],
        "entry_rule": "every_time", "entry_days": "30", "relevance_days": "7", "_edit_steps": "1",
    }  # fmt: skip
    response = admin_client.post(url, form)
    flow = Flow.objects.get(name="Shipping updates")
    assert (flow.from_statuses, flow.to_statuses) == ([], ["shipped", "delivered"])
    draft = flow.draft_version
    assert response["Location"] == reverse("admin:flows_flowversion_change", args=[draft.pk])

    reader = FormReader("flow_form")
    reader.feed(admin_client.get(reverse("admin:flows_flow_change", args=[flow.pk])).content.decode())
    assert [value for name, value in reader.fields if name == "to_statuses"] == ["shipped", "delivered"]


def test_statuses_with_a_trigger_that_has_none_are_refused(admin_client):
    form = {
        "name": "Odd", "trigger": "new_customer", "to_statuses": ["shipped"], "entry_rule": "once_per_order",
        "entry_days": "30", "relevance_days": "7",
    }  # fmt: skip
    page = text(admin_client.post(reverse("admin:flows_flow_add"), form))
    assert "Statuses only apply to the 'Order status changed' trigger" in page
    assert "'Once per order' needs an order trigger" in page
    assert not Flow.objects.filter(name="Odd").exists()


# --- editing steps ------------------------------------------------------------------


def test_edit_steps_on_a_live_flow_starts_a_draft_copy_and_opens_it(admin_client):
    flow = waiting_flow()
    response = admin_client.post(reverse("admin:flows_flow_edit_steps", args=[flow.pk]))
    draft = flow.draft_version
    assert draft.number == 2 and keys(draft) == ["paid", "wait", "finish"]
    assert response["Location"] == reverse("admin:flows_flowversion_change", args=[draft.pk])
    assert notes(response) == ["Started draft v2 as a copy of v1. Runs keep using v1 until you publish the draft."]
    # Pressing it again opens the same draft.
    admin_client.post(reverse("admin:flows_flow_edit_steps", args=[flow.pk]))
    assert flow.versions.count() == 2


def test_staff_add_steps_of_several_types_through_the_editor(admin_client):
    flow = make_flow(steps=[], live=False)
    draft = flow.draft_version
    editor = StepEditor(admin_client, draft.pk)
    editor.add("orderstatuscondition", key="paid", statuses=["paid", "confirmed"], otherwise_goto="sorry")
    editor.add("delaywait", key="wait", minutes_0="2", minutes_1="10080")
    editor.add("timeofdaywait", key="morning", at="10:00", weekdays=["0", "4"])
    editor.add("ordercontainsproductscondition", key="mugs", skus="MUG-1, TEE-2 ,MUG-1")
    editor.add("splitstep", key="split", paths="A 70 sorry\nB 30 sorry\n", holdout_percent="10")
    editor.add("endstep", label="Sorry")
    response = editor.save()
    assert response.status_code == 302, text(response)[:3000]

    steps = {step.key: step for step in draft.ordered_steps()}
    assert list(steps) == ["paid", "wait", "morning", "mugs", "split", "sorry"]
    assert steps["paid"].statuses == ["paid", "confirmed"] and steps["paid"].otherwise_goto == "sorry"
    assert steps["wait"].minutes == 2 * 10080
    assert steps["morning"].weekdays == [0, 4]
    assert steps["mugs"].skus == ["MUG-1", "TEE-2"]
    assert steps["split"].paths == [
        {"name": "A", "weight": 70, "goto": "sorry"},
        {"name": "B", "weight": 30, "goto": "sorry"},
    ]
    # The end step's key came from its label; blank positions went to the end in order.
    assert [s.position for s in steps.values()] == [10, 20, 30, 40, 50, 60]
    assert check_flow(flow, draft) == []

    # Saved values read back into the same friendly fields.
    again = StepEditor(admin_client, draft.pk)
    assert again.data[f"{again.row_of('wait')}-minutes_0"] == ["2"]
    assert again.data[f"{again.row_of('wait')}-minutes_1"] == ["10080"]
    assert again.data[f"{again.row_of('mugs')}-skus"] == ["MUG-1, TEE-2"]
    assert again.data[f"{again.row_of('split')}-paths"] == ["A 70 sorry\nB 30 sorry"]
    assert again.data[f"{again.row_of('morning')}-weekdays"] == ["0", "4"]


def test_every_step_type_can_be_added_through_the_editor(admin_client):
    campaign = Campaign.objects.create(name="Thanks", channel="email", profile="transactional")
    rows = {
        "orderstatuscondition": {"statuses": ["paid"]},
        "contactsubscribedcondition": {"channel": "email"},
        "placedordercondition": {},
        "ordercountcondition": {"operator": "gt", "value": "2"},
        "ordertotalcondition": {"amount": "100.00"},
        "ordercontainsproductscondition": {"skus": "TEE-1"},
        "registeredaftercondition": {"after_0": "2026-01-01", "after_1": "00:00:00"},
        "customerattributecondition": {"attribute": "tag", "value": "vip"},
        "delaywait": {"minutes_0": "3"},
        "timeofdaywait": {},
        "datefieldwait": {"field": "order.placed_at", "offset_days": "30"},
        "sendcampaignstep": {"campaign": str(campaign.pk)},
        "alertteamstep": {"alias": "email", "address": "team@example.com", "text": "Order {{ order.number }}"},
        "tagcustomerstep": {"tag": "vip"},
        "splitstep": {"paths": "A 1 last"},
        "statusrouterstep": {"routes": "shipped last"},
        "endstep": {"key": "last"},
    }
    flow = make_flow(steps=[], live=False)
    editor = StepEditor(admin_client, flow.draft_version.pk)
    assert set(editor.empty) == set(rows)  # the editor offers every step type
    for step_type, values in rows.items():
        editor.add(step_type, **values)
    response = editor.save()
    assert response.status_code == 302, text(response)[:3000]
    steps = flow.draft_version.ordered_steps()
    assert [type(step).__name__.lower() for step in steps] == list(rows)
    assert steps[8].minutes == 3 * 1440  # days, the unit a new delay starts with
    assert steps[9].weekdays == []
    assert steps[12].alias == "email"
    assert steps[15].routes == {"shipped": "last"}
    assert [p for p in check_flow(flow) if "jumps" in p] == []


def test_badly_written_paths_and_skus_are_shown_as_errors_and_nothing_is_saved(admin_client):
    flow = make_flow(steps=[(EndStep, {"key": "end"})], live=False)
    editor = StepEditor(admin_client, flow.draft_version.pk)
    editor.add("splitstep", key="split", paths="A fifty end\nB 50\nA 10 End")
    editor.add("ordercontainsproductscondition", key="mugs", skus=" , ")
    editor.add("statusrouterstep", key="route", routes="shiped end\nshipped\nshipped end")
    page = text(editor.save())
    assert "Line 1: 'shiped' is not an order status; use one of pending, confirmed" in page
    assert "Line 2 ('shipped'): write each route as \"status step-key\"" in page
    assert "Line 1: the weight 'fifty' must be a whole number of 1 or more." in page
    assert "Line 2 ('B 50'): write each path as \"name weight step-key\"" in page
    assert "Line 3: 'End' is not a step key" in page
    assert "Line 3: the name 'A' is used twice" in page
    assert "Name at least one SKU" in page
    assert keys(flow.draft_version) == ["end"]


def test_two_steps_with_one_key_are_refused(admin_client):
    flow = make_flow(steps=[(EndStep, {"key": "end"})], live=False)
    editor = StepEditor(admin_client, flow.draft_version.pk)
    editor.add("tagcustomerstep", key="end", tag="vip")
    page = text(editor.save())
    assert "Please correct the duplicate data for key" in page or "already exists" in page
    assert keys(flow.draft_version) == ["end"]


def test_staff_reorder_and_remove_steps_by_position_and_the_delete_box(admin_client):
    flow = waiting_flow()
    draft = draft_version(flow=flow)
    editor = StepEditor(admin_client, draft.pk)
    editor.set(f"{editor.row_of('wait')}-position", "5")
    editor.set(f"{editor.row_of('paid')}-DELETE", "on")
    response = editor.save()
    assert response.status_code == 302
    assert keys(draft) == ["wait", "finish"]
    assert keys(flow.current_version) == ["paid", "wait", "finish"]  # the published version never changes
    assert f"Saved draft v2 of '{flow}'." in notes(response)


def test_discarding_a_draft_keeps_the_published_steps(admin_client):
    flow = waiting_flow()
    draft = draft_version(flow=flow)
    published = reverse("admin:flows_flowversion_delete", args=[flow.current_version.pk])
    assert admin_client.get(published).status_code == 403
    response = admin_client.post(reverse("admin:flows_flowversion_delete", args=[draft.pk]), {"post": "yes"})
    assert response["Location"] == reverse("admin:flows_flow_change", args=[flow.pk])
    assert flow.draft_version is None and keys(flow.current_version) == ["paid", "wait", "finish"]
    assert notes(response) == ["Discarded Test flow v2 (draft); the published steps stay as they were."]


def test_a_published_version_is_read_only(admin_client):
    flow = waiting_flow()
    url = reverse("admin:flows_flowversion_change", args=[flow.current_version.pk])
    page = text(admin_client.get(url))
    assert "steps-TOTAL_FORMS" not in page
    assert "statuses: Paid" in page and "otherwise end the run" in page
    assert "Edit steps in a draft" in page
    assert admin_client.post(url, {"note": "x"}).status_code == 403


def test_a_viewer_sees_the_draft_steps_without_inputs_to_change_them(client):
    flow = waiting_flow()
    draft = draft_version(flow=flow)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_flow", "view_flowversion"]))
    client.force_login(viewer)
    page = text(client.get(reverse("admin:flows_flowversion_change", args=[draft.pk])))
    assert "Condition: order status is one of" in page and "finish" in page
    assert 'name="steps-0-key"' not in page and "Publish v2" not in page


# --- activate, pause, resume -----------------------------------------------------


def test_activating_a_ready_flow_publishes_its_draft_and_goes_live(admin_client):
    flow = make_flow(steps=[(OrderStatusCondition, {"key": "paid", "statuses": ["paid"]})], live=False)
    page = text(admin_client.get(reverse("admin:flows_flow_change", args=[flow.pk])))
    assert "Activate</button>" in page
    response = admin_client.post(reverse("admin:flows_flow_activate", args=[flow.pk]))
    flow.refresh_from_db()
    assert flow.status == "live" and flow.current_version.number == 1 and flow.went_live_at is not None
    assert notes(response) == ["'Test flow' is live on v1: matching events now start runs."]


def test_activation_refused_shows_each_problem_and_leaves_the_flow_as_it_was(admin_client):
    campaign = Campaign.objects.create(name="Spring sale", channel="email", profile="marketing")
    flow = make_flow(steps=[(SendCampaignStep, {"key": "send", "campaign": campaign})], live=False)
    problems = check_flow(flow)
    assert any("not active" in p for p in problems) and any("sender" in p for p in problems)

    response = admin_client.post(reverse("admin:flows_flow_activate", args=[flow.pk]), follow=True)
    flow.refresh_from_db()
    assert flow.status == "draft" and flow.current_version is None
    assert notes(response) == ["'Test flow' cannot go live yet:", *problems]
    page = text(response)
    assert all(problem in page for problem in problems)


def test_pause_and_resume(admin_client):
    flow = waiting_flow()
    response = admin_client.post(reverse("admin:flows_flow_pause", args=[flow.pk]))
    flow.refresh_from_db()
    assert flow.status == "paused"
    assert "no new runs start" in notes(response)[0]
    assert "Resume</button>" in text(admin_client.get(reverse("admin:flows_flow_change", args=[flow.pk])))
    resumed = admin_client.post(reverse("admin:flows_flow_resume", args=[flow.pk]))
    flow.refresh_from_db()
    assert flow.status == "live"
    assert notes(resumed)[-1] == "'Test flow' is live again: runs whose wait ended during the pause continue now."
    again = admin_client.post(reverse("admin:flows_flow_resume", args=[flow.pk]))
    assert notes(again)[-1] == "'Test flow' is not paused: there is nothing to resume."


def test_buttons_are_post_only_and_need_the_change_flow_permission(admin_client):
    flow = waiting_flow()
    assert admin_client.get(reverse("admin:flows_flow_pause", args=[flow.pk])).status_code == 405
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_flow", "view_flowversion"]))
    client = Client()
    client.force_login(viewer)
    assert client.get(reverse("admin:flows_flow_change", args=[flow.pk])).status_code == 200
    for name in ["pause", "activate", "resume", "edit_steps"]:
        assert client.post(reverse(f"admin:flows_flow_{name}", args=[flow.pk])).status_code == 403
    flow.refresh_from_db()
    assert flow.status == "live" and flow.draft_version is None
    # The admin site's CSRF protection covers the buttons.
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.create_superuser("root", password="pw"))
    assert strict.post(reverse("admin:flows_flow_pause", args=[flow.pk])).status_code == 403


# --- publishing ------------------------------------------------------------------


def test_publishing_without_moving_keeps_waiting_runs_on_their_version(admin_client):
    flow = waiting_flow()
    run = waiting_run(flow)
    draft = draft_version(flow=flow)
    draft.steps.filter(key="finish").delete()
    add_steps(draft, [(EndStep, {"key": "goodbye"})])
    response = admin_client.post(reverse("admin:flows_flowversion_publish", args=[draft.pk]))
    draft.refresh_from_db()
    run.refresh_from_db()
    assert draft.published_at is not None and flow.current_version == draft
    assert (run.version.number, run.step_key) == (1, "finish")
    assert notes(response) == [
        f"Published v2 of '{flow}': new runs start on it. Waiting runs stay on the version they started on."
    ]


def test_publishing_and_moving_waiting_runs_resumes_them_at_the_step_with_the_same_key(admin_client):
    flow = waiting_flow()
    run = waiting_run(flow)  # did "paid" and "wait"; stands before "finish"
    draft = draft_version(flow=flow)
    page = text(admin_client.get(reverse("admin:flows_flowversion_change", args=[draft.pk])))
    assert "Move waiting runs to this version (1 waiting on older versions)" in page
    add_steps(draft, [(OrderStatusCondition, {"key": "new-check", "statuses": ["paid"]})])
    draft.steps.filter(key="new-check").update(position=5)  # before the steps the run already did
    publish = reverse("admin:flows_flowversion_publish", args=[draft.pk])
    response = admin_client.post(publish, {"move_waiting_runs": "on"})
    run.refresh_from_db()
    assert (run.version.number, run.step_key) == (2, "finish")
    assert notes(response)[0] == f"Published v2 of '{flow}': new runs start on it. 1 waiting run moved to it."
    assert response["Location"] == reverse("admin:flows_flow_change", args=[flow.pk])


def test_publishing_a_broken_draft_of_a_live_flow_is_refused_with_its_problems(admin_client):
    flow = waiting_flow()
    draft = draft_version(flow=flow)
    OrderStatusCondition.objects.filter(version=draft, key="paid").update(otherwise_goto="nowhere")
    response = admin_client.post(reverse("admin:flows_flowversion_publish", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.published_at is None
    assert notes(response) == [
        f"v2 was not published: '{flow}' is live, and this version would break it:",
        "Step 'paid' jumps to 'nowhere', which is not a later step of this flow.",
    ]


# --- runs ------------------------------------------------------------------------------


def test_the_run_list_filters_and_searches_by_customer_email_and_order_number(admin_client):
    flow = waiting_flow()
    ada = waiting_run(flow)
    other = run_with(flow, "completed", customer=CustomerFactory(email="grace@example.com"))
    url = reverse("admin:flows_flowrun_changelist")
    page = text(admin_client.get(url, {"q": ada.customer.email}))
    assert f"/admin/flows/flowrun/{ada.pk}/change/" in page and f"/admin/flows/flowrun/{other.pk}/change/" not in page
    page = text(admin_client.get(url, {"q": ada.order.number}))
    assert f"/admin/flows/flowrun/{ada.pk}/change/" in page
    page = text(admin_client.get(url, {"status__exact": "completed", "flow__id__exact": flow.pk}))
    assert f"/admin/flows/flowrun/{other.pk}/change/" in page and f"/admin/flows/flowrun/{ada.pk}/change/" not in page
    page = text(admin_client.get(url, {"version__id__exact": flow.current_version.pk}))
    assert f"/admin/flows/flowrun/{ada.pk}/change/" in page


def test_a_run_page_shows_its_journey_with_the_send_record_beside_each_send(admin_client):
    flow = waiting_flow()
    run = waiting_run(flow)
    campaign = Campaign.objects.create(name="Welcome email", channel="email", profile="transactional")
    send = Send.objects.create(
        campaign=campaign, customer=run.customer, key=f"flowrun:{run.pk}:send", channel="email",
        decision="blocked", reason="capped", detail="3 emails in 7 days already", decided_at=NOW,
    )  # fmt: skip
    StepLog.objects.create(run=run, step_key="send", step_type="SendCampaignStep", outcome="next",
                           reason="send_blocked", detail="capped", send=send, executed_at=NOW)  # fmt: skip
    response = admin_client.get(reverse("admin:flows_flowrun_change", args=[run.pk]))
    page = text(response)
    assert "Condition: order status is one of" in page and "passed" in page
    assert "Wait: a fixed delay" in page and "waited_until" in page
    assert "Blocked: Frequency cap" in page and "3 emails in 7 days already" in page and "Welcome email" in page
    assert '"event_id": "e1"' in page  # the trigger event as JSON
    assert "finish: End the run (finish)" in page
    assert "Retry from the failed step" not in page
    assert 'name="_save"' not in page  # read-only


def test_runs_cannot_be_added_changed_or_deleted(admin_client):
    flow = waiting_flow()
    run = waiting_run(flow)
    assert admin_client.get(reverse("admin:flows_flowrun_add")).status_code == 403
    assert admin_client.post(reverse("admin:flows_flowrun_change", args=[run.pk]), {}).status_code == 403
    assert admin_client.get(reverse("admin:flows_flowrun_delete", args=[run.pk])).status_code == 403


def failed_run() -> FlowRun:
    flow = make_flow(steps=[(OrderStatusCondition, {"key": "status", "statuses": ["paid"]})], now=NOW)
    [run] = engine.start_runs(event=order_event(OrderFactory(placed_at=NOW)), now=NOW)
    OrderStatusCondition.objects.filter(key="status").update(statuses=5)
    engine.advance_run(run_id=run.pk, now=NOW)
    OrderStatusCondition.objects.filter(key="status").update(statuses=["paid"])  # staff fixed the cause
    run.refresh_from_db()
    assert run.status == "failed" and flow.pk
    return run


def test_a_failed_run_is_retried_from_its_page(admin_client):
    run = failed_run()
    page = text(admin_client.get(reverse("admin:flows_flowrun_change", args=[run.pk])))
    assert "Retry from the failed step" in page and "TypeError" in page
    response = admin_client.post(reverse("admin:flows_flowrun_retry", args=[run.pk]))
    run.refresh_from_db()
    assert (run.status, run.step_key, run.error) == ("waiting", "status", "")
    assert notes(response) == ["Queued 1 failed run to run again from the step that failed."]


def test_the_retry_action_retries_only_failed_runs(admin_client):
    run = failed_run()
    done = run_with(run.flow, "completed")
    url = reverse("admin:flows_flowrun_changelist")
    response = admin_client.post(url, {"action": "retry_selected", "_selected_action": [run.pk, done.pk]}, follow=True)
    run.refresh_from_db()
    done.refresh_from_db()
    assert (run.status, done.status) == ("waiting", "completed")
    assert notes(response) == [
        "Queued 1 failed run to run again from the step that failed.",
        "1 run left as it was: only failed runs are retried.",
    ]


def test_skipped_entries_say_why_an_event_started_nothing(admin_client):
    flow = waiting_flow()
    order = OrderFactory(placed_at=NOW - timedelta(days=10))
    engine.start_runs(event=order_event(order, "old-order"), now=NOW)
    assert SkippedEntry.objects.filter(flow=flow, reason="stale_event").exists()
    page = text(admin_client.get(reverse("admin:flows_skippedentry_changelist"), {"flow__id__exact": flow.pk}))
    assert "old-order" in page and "stale_event" in page and "more than 7 days ago" in page
    flow_page = text(admin_client.get(reverse("admin:flows_flow_change", args=[flow.pk])))
    assert "Events that started nothing: 1" in flow_page


# --- recipes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str


@pytest.fixture
def recipes(monkeypatch):  # type: ignore[no-untyped-def]
    """A stand-in for flows.recipes with the names the admin calls."""
    module = types.ModuleType("flows.recipes")
    module.RECIPES = {
        "welcome": Recipe("Welcome and follow-up", "A welcome email, then a reminder a week later."),
        "broken": Recipe("Broken", "Refuses."),
    }
    calls = []

    def create_from_recipe(*, slug: str, shop=None, now: datetime) -> Flow:  # type: ignore[no-untyped-def]
        calls.append((slug, shop, now))
        if slug == "broken":
            raise ValueError("the starter template 'welcome' is missing")
        flow = make_flow(name="Welcome and follow-up", trigger="new_customer", steps=[(EndStep, {"key": "end"})],
                         live=False, recipe=slug, shop=shop)  # fmt: skip
        return flow

    module.create_from_recipe = create_from_recipe
    monkeypatch.setitem(sys.modules, "flows.recipes", module)
    return calls


def test_staff_start_a_flow_from_a_recipe_for_a_shop(admin_client, recipes):
    acme, _ = ShopFactory(name="Acme"), ShopFactory(name="Bolt")
    page = text(admin_client.get(reverse("admin:flows_flow_changelist")))
    assert 'name="recipe" value="welcome"' in page
    assert "A welcome email, then a reminder a week later." in page
    assert f'<option value="{acme.pk}">Acme</option>' in page
    response = admin_client.post(reverse("admin:flows_flow_recipe"), {"recipe": "welcome", "shop": acme.pk})
    flow = Flow.objects.get(recipe="welcome")
    assert (flow.shop, flow.status) == (acme, "draft")
    assert response["Location"] == reverse("admin:flows_flow_change", args=[flow.pk])
    assert [(slug, shop) for slug, shop, _ in recipes] == [("welcome", acme)]
    assert notes(response)[0].startswith("Created 'Welcome and follow-up' from the recipe 'Welcome and follow-up'.")


def test_a_recipe_that_refuses_or_does_not_exist_creates_nothing(admin_client, recipes):
    response = admin_client.post(reverse("admin:flows_flow_recipe"), {"recipe": "broken"})
    assert notes(response) == ["Could not start from 'Broken': the starter template 'welcome' is missing"]
    assert admin_client.post(reverse("admin:flows_flow_recipe"), {"recipe": "nope"}).status_code == 404
    assert admin_client.get(reverse("admin:flows_flow_recipe")).status_code == 405
    assert not Flow.objects.exists()


def test_every_real_recipe_starts_a_draft_flow_whose_pages_open(admin_client):
    from flows.recipes import RECIPES

    page = text(admin_client.get(reverse("admin:flows_flow_changelist")))
    for slug, recipe in RECIPES.items():
        assert f'name="recipe" value="{slug}"' in page
        response = admin_client.post(reverse("admin:flows_flow_recipe"), {"recipe": slug})
        flow = Flow.objects.get(pk=int(response["Location"].split("/")[-3]))
        assert flow.recipe == slug and flow.status == "draft"
        flow_page = text(admin_client.get(response["Location"]))
        assert recipe.name in flow_page or flow.name in flow_page
        version = flow.draft_version or flow.current_version
        assert keys(version)
        assert admin_client.get(reverse("admin:flows_flowversion_change", args=[version.pk])).status_code == 200
