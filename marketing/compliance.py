"""What the law asks of a campaign before it may go out, checked on its templates.

- A marketing email, in every variant: the unsubscribe link
  (``{{ message.unsubscribe_url }}``) and the postal address
  (``{{ shop.postal_address }}``) in both the HTML body (when there is one) and the text
  body; and a sender name and address on the campaign. The postal address is accepted
  only as that variable, never as literal text: the shop's address then lives in one
  place and a move updates every campaign.
- A marketing SMS or WhatsApp message, in every variant: an opt-out line, i.e. the word
  STOP ("Reply STOP to opt out"). A WhatsApp variant that sends an approved template
  we cannot read gets a warning to accept instead, unless its text holds the line.
- A marketing push campaign has nothing to check here: push consent is checked per
  customer when sending.
- A transactional campaign that carries a promotion (a promo pool, a promo code in the
  template, or words such as "% off", "coupon", "discount code", "promo code") gets a
  warning the staff member must accept: a promotion needs consent.

A template that cannot be parsed is an error in every profile. Variables are found with
``marketing.rendering.template_variables`` anywhere in a template, so an unsubscribe link
hidden in a branch that never renders still passes: the checks stop forgetting, not
deliberate evasion. Opt-out lines and promotion words are looked for in the template's
literal text (not in comments).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import jinja2
from jinja2 import nodes

from channels.kinds import ChannelKind
from marketing.models import Campaign, CampaignVariant
from marketing.rendering import TemplateProblem, template_variables

ERROR = "error"
WARNING = "warning"
TRANSACTIONAL_PROMO = "transactional_promo"
UNSUBSCRIBE = "message.unsubscribe_url"
POSTAL_ADDRESS = "shop.postal_address"
PROMO_CODE_CALL = "last_received_promo_code"
PROMO_WORDS = re.compile(r"%\s*off\b|\bdiscount codes?\b|\bcoupons?\b|\bpromo(?:tion(?:al)?)? codes?\b", re.IGNORECASE)
OPT_OUT = re.compile(r"\bstop\b", re.IGNORECASE)
OPT_OUT_CHANNELS = frozenset({ChannelKind.SMS, ChannelKind.WHATSAPP})
# Where promotions hide in a variant, with the words staff see in the admin.
PROMO_FIELDS = {
    "subject": "subject",
    "preheader": "preheader",
    "html_body": "HTML body",
    "text_body": "text body",
    "title": "title",
}

_parser = jinja2.Environment()


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    code: str
    message: str


@dataclass(frozen=True)
class Parsed:
    """What a template mentions: its variable paths and its literal text."""

    variables: frozenset[str]
    text: str


def check_campaign(campaign: Campaign) -> list[Problem]:
    """Every reason the campaign may not, or should not, go out, errors first."""
    variants = list(campaign.variants.all().order_by("name"))
    problems: list[Problem] = []
    if not variants:
        problems.append(
            Problem(ERROR, "no_variants", "The campaign has no variants: add one with the message's content.")
        )
    if campaign.is_marketing and campaign.channel == ChannelKind.EMAIL:
        problems += _sender_problems(campaign)
    if not campaign.is_marketing and campaign.promo_pool_id is not None:
        problems.append(
            Problem(
                WARNING,
                TRANSACTIONAL_PROMO,
                f'This transactional campaign hands out promo codes from the pool "{campaign.promo_pool}". '
                "Promotions need marketing consent: make it a marketing campaign, or accept this warning.",
            )
        )
    for variant in variants:
        parsed, broken = _parse_variant(variant)
        problems += broken
        if campaign.is_marketing:
            problems += _marketing_problems(campaign, variant, parsed)
        else:
            problems += _promo_warnings(variant, parsed)
    return sorted(problems, key=lambda problem: problem.level != ERROR)


def activate_campaign(*, campaign: Campaign, accept_warnings: bool = False) -> list[Problem]:
    """Make the campaign active, unless the check finds errors or warnings not accepted:
    then return those and leave it as it was. Accepting a transactional-promotion warning
    is remembered on the campaign (``promo_warning_accepted``). Returns [] when active."""
    problems = check_campaign(campaign)
    refused = [p for p in problems if p.level == ERROR or not (accept_warnings or _accepted_before(campaign, p))]
    if refused:
        return refused
    campaign.status = Campaign.Status.ACTIVE
    if any(p.code == TRANSACTIONAL_PROMO for p in problems):
        campaign.promo_warning_accepted = True
    campaign.save(update_fields=["status", "promo_warning_accepted", "updated_at"])
    return []


def _accepted_before(campaign: Campaign, problem: Problem) -> bool:
    return problem.code == TRANSACTIONAL_PROMO and campaign.promo_warning_accepted


@functools.lru_cache(maxsize=512)
def _parse(source: str) -> Parsed:
    """Raises ``TemplateProblem`` for a template that cannot be read. Cached: the send
    checks its campaign before every message, and templates rarely change."""
    variables = template_variables(source)
    try:
        tree = _parser.parse(source)
    except jinja2.TemplateSyntaxError:
        return Parsed(frozenset(variables), source)
    words = [node.data for node in tree.find_all(nodes.TemplateData)]
    words += [node.value for node in tree.find_all(nodes.Const) if isinstance(node.value, str)]
    return Parsed(frozenset(variables), "\n".join(words))


def _parse_variant(variant: CampaignVariant) -> tuple[dict[str, Parsed], list[Problem]]:
    parsed: dict[str, Parsed] = {}
    problems: list[Problem] = []
    for name, words in (*PROMO_FIELDS.items(), ("link", "link")):
        source = getattr(variant, name) or ""
        try:
            parsed[name] = _parse(source)
        except TemplateProblem as problem:
            parsed[name] = Parsed(frozenset(), source)
            where = f"line {problem.line} of the {words}" if problem.line else f"the {words}"
            problems.append(Problem(ERROR, "template_syntax", f"Variant {variant.name}: {where}: {problem.message}"))
    parameters = "\n".join(_as_template(str(p)) for p in variant.template_parameters or [])
    try:
        parsed["template_parameters"] = _parse(parameters)
    except TemplateProblem:
        # Parameters are expressions; rendering reports their syntax with their position.
        parsed["template_parameters"] = Parsed(frozenset(), parameters)
    return parsed, problems


def _as_template(parameter: str) -> str:
    """A WhatsApp parameter is an expression (``order.number``) or a small template."""
    return parameter if "{{" in parameter or "{%" in parameter else "{{ " + parameter + " }}"


def _marketing_problems(campaign: Campaign, variant: CampaignVariant, parsed: dict[str, Parsed]) -> list[Problem]:
    if campaign.channel == ChannelKind.EMAIL:
        return list(_email_problems(variant, parsed))
    if campaign.channel in OPT_OUT_CHANNELS:
        return list(_opt_out_problems(campaign, variant, parsed["text_body"]))
    return []


def _email_problems(variant: CampaignVariant, parsed: dict[str, Parsed]) -> Iterable[Problem]:
    label = f"Variant {variant.name}"
    bodies = [("text_body", "text body")]
    if variant.html_body.strip():
        bodies.insert(0, ("html_body", "HTML body"))
    if not variant.text_body.strip():
        yield Problem(
            ERROR,
            "missing_text_body",
            f"{label}: the text body is empty. Every email needs a plain-text version, with the unsubscribe link "
            "({{ message.unsubscribe_url }}) and the postal address ({{ shop.postal_address }}).",
        )
        bodies.pop()
    for field_name, words in bodies:
        variables = parsed[field_name].variables
        if UNSUBSCRIBE not in variables:
            yield Problem(
                ERROR, "missing_unsubscribe", f"{label}: the {words} has no unsubscribe link ({{{{ {UNSUBSCRIBE} }}}})."
            )
        if POSTAL_ADDRESS not in variables:
            yield Problem(
                ERROR,
                "missing_postal_address",
                f"{label}: the {words} has no postal address ({{{{ {POSTAL_ADDRESS} }}}}).",
            )


def _sender_problems(campaign: Campaign) -> list[Problem]:
    problems = []
    if not campaign.sender_name.strip():
        problems.append(
            Problem(ERROR, "missing_sender_name", "The campaign has no sender name (the From name people see).")
        )
    if not campaign.sender_address.strip():
        problems.append(
            Problem(ERROR, "missing_sender_address", "The campaign has no sender address (the From email address).")
        )
    return problems


def _opt_out_problems(campaign: Campaign, variant: CampaignVariant, text: Parsed) -> Iterable[Problem]:
    if OPT_OUT.search(text.text):
        return
    label = f"Variant {variant.name}"
    if campaign.channel == ChannelKind.WHATSAPP and variant.template_name:
        yield Problem(
            WARNING,
            "opt_out_unverified",
            f'{label}: it sends the approved WhatsApp template "{variant.template_name}", whose text Herald cannot '
            'read. Make sure it has an opt-out line (such as "Reply STOP to opt out" or a "Stop promotions" '
            "button), then accept this warning.",
        )
        return
    yield Problem(
        ERROR,
        "missing_opt_out",
        f'{label}: the message has no opt-out line. Add one such as "Reply STOP to opt out".',
    )


def _promo_warnings(variant: CampaignVariant, parsed: dict[str, Parsed]) -> list[Problem]:
    found: list[str] = []
    for name, words in (*PROMO_FIELDS.items(), ("template_parameters", "template parameters")):
        template = parsed[name]
        if any(path.rpartition(".")[2] == PROMO_CODE_CALL for path in template.variables):
            found.append(f"the {words} shows a promo code")
        match = PROMO_WORDS.search(template.text)
        if match:
            found.append(f'the {words} says "{match.group(0)}"')
    if not found:
        return []
    return [
        Problem(
            WARNING,
            TRANSACTIONAL_PROMO,
            f"Variant {variant.name}: this transactional message carries a promotion ({'; '.join(found)}). "
            "Promotions need marketing consent: make it a marketing campaign, or accept this warning.",
        )
    ]
