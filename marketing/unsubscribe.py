"""The customer's side of consent: unsubscribe links and the preference page.

A link carries a token signed with ``django.core.signing`` (salt ``herald.unsubscribe``)
over [customer id, channel, campaign id or null]. Tokens never expire: a law and the
mailbox providers expect an unsubscribe link in a years-old email to keep working, and
the token grants nothing but changing that customer's marketing consent. They are
deterministic (no timestamp), so a preview and the send show the same link. Rotating
``SECRET_KEY`` breaks old links unless the old key stays in ``SECRET_KEY_FALLBACKS``.

Routes (``marketing/public_urls.py``):

- ``POST /u/<token>/`` with ``List-Unsubscribe=One-Click`` (RFC 8058, sent by mailbox
  providers, no CSRF token): unsubscribes that channel at once and answers 200.
- ``GET /u/<token>/``: a page saying what will stop, with a button. A GET alone never
  unsubscribes: mail scanners follow every link in a message.
- ``POST /u/<token>/`` from that button (with its CSRF token): unsubscribes and confirms,
  with a link to the preference page.
- ``/u/<token>/preferences/``: every channel the customer has an address in, with its
  status and a button to change it.

A token that does not verify gets a 400 page in plain words, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from channels.kinds import ChannelKind
from channels.registry import backends
from marketing.consent import consent_status, set_consent
from marketing.models import Campaign, ContactPoint
from marketing.models.audience import ConsentSource, ConsentStatus
from orders.models import Customer, Shop

SALT = "herald.unsubscribe"

# What a customer stops receiving, in their words.
WHAT_STOPS: dict[str, str] = {
    ChannelKind.EMAIL: "marketing emails",
    ChannelKind.SMS: "marketing text messages",
    ChannelKind.MOBILE_PUSH: "promotional notifications in our app",
    ChannelKind.WEB_PUSH: "promotional notifications in your browser",
}


@dataclass(frozen=True)
class Link:
    customer_id: int
    channel: str
    campaign_id: int | None


class BadToken(Exception):
    pass


def make_token(*, customer: Customer, channel: str, campaign: Campaign | None = None) -> str:
    return signing.Signer(salt=SALT).sign_object([customer.pk, channel, campaign.pk if campaign else None])


def read_token(token: str) -> Link:
    """The link a token was made for. Raises ``BadToken`` when it does not verify or
    does not hold what we put in."""
    try:
        payload = signing.Signer(salt=SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise BadToken(token) from None
    if not (isinstance(payload, list) and len(payload) == 3):
        raise BadToken(token)
    customer_id, channel, campaign_id = payload
    if not isinstance(customer_id, int) or channel not in ChannelKind.values:
        raise BadToken(token)
    if campaign_id is not None and not isinstance(campaign_id, int):
        raise BadToken(token)
    return Link(customer_id, channel, campaign_id)


def unsubscribe_url(*, customer: Customer, channel: str, campaign: Campaign | None = None) -> str:
    """The absolute unsubscribe link (``message.unsubscribe_url`` in templates)."""
    # Built by hand, not reversed: links in sent messages must not depend on how the
    # project URLconf mounts the public routes.
    return f"{settings.HERALD_PUBLIC_URL}/u/{make_token(customer=customer, channel=channel, campaign=campaign)}/"


def preferences_url(*, customer: Customer, channel: str, campaign: Campaign | None = None) -> str:
    """The absolute link to the customer's preference page."""
    return unsubscribe_url(customer=customer, channel=channel, campaign=campaign) + "preferences/"


def list_unsubscribe_headers(*, customer: Customer, channel: str, campaign: Campaign | None) -> dict[str, str]:
    """The message data the email backend turns into ``List-Unsubscribe`` and (for an
    https URL) ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``."""
    return {"list_unsubscribe_url": unsubscribe_url(customer=customer, channel=channel, campaign=campaign)}


# --- views ------------------------------------------------------------------------


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe_view(request: HttpRequest, token: str) -> HttpResponse:
    found = _resolve(request, token)
    if isinstance(found, HttpResponse):
        return found
    link, customer = found
    if request.method == "POST" and request.POST.get("List-Unsubscribe") == "One-Click":
        _unsubscribe(link, customer, how="One-click unsubscribe from the mailbox")
        return HttpResponse("You are unsubscribed.\n", content_type="text/plain; charset=utf-8")
    if request.method == "POST":
        return _unsubscribe_button(request, token, link, customer)
    already = consent_status(customer, link.channel) == ConsentStatus.UNSUBSCRIBED
    return render(request, "marketing/public/unsubscribe.html", _page(token, link, customer) | {"already": already})


@csrf_protect
def _unsubscribe_button(request: HttpRequest, token: str, link: Link, customer: Customer) -> HttpResponse:
    # Only the one-click POST is exempt (mailbox providers hold no CSRF token); the
    # page's own button is a normal form.
    _unsubscribe(link, customer, how="Unsubscribe page")
    return render(request, "marketing/public/unsubscribed.html", _page(token, link, customer))


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def preferences_view(request: HttpRequest, token: str) -> HttpResponse:
    found = _resolve(request, token)
    if isinstance(found, HttpResponse):
        return found
    link, customer = found
    channels = reachable_channels(customer, link.channel)
    if request.method == "POST":
        channel, status = request.POST.get("channel", ""), request.POST.get("status", "")
        if channel not in channels or status not in (ConsentStatus.SUBSCRIBED, ConsentStatus.UNSUBSCRIBED):
            return _bad_link(request, "That choice is not one this page offers. Please use the buttons on the page.")
        set_consent(
            customer=customer,
            channel=channel,
            status=status,
            source=ConsentSource.PREFERENCE_PAGE,
            now=timezone.now(),
            detail=_campaign_words("Preference page", link.campaign_id),
        )
        return HttpResponseRedirect(f"{request.path}?saved={channel}")
    rows = []
    for channel, address in channels.items():
        status = consent_status(customer, channel)
        rows.append(
            {
                "channel": channel,
                "label": ChannelKind(channel).label,
                "address": address,
                "subscribed": status == ConsentStatus.SUBSCRIBED,
                "status_words": STATUS_WORDS[status],
            }
        )
    saved = request.GET.get("saved", "")
    context = _page(token, link, customer) | {
        "rows": rows,
        "saved": ChannelKind(saved).label if saved in channels else "",
    }
    return render(request, "marketing/public/preferences.html", context)


STATUS_WORDS: dict[str, str] = {
    ConsentStatus.SUBSCRIBED: "Subscribed",
    ConsentStatus.UNSUBSCRIBED: "Unsubscribed",
    ConsentStatus.NEVER_ASKED: "Not subscribed",
}


def reachable_channels(customer: Customer, channel: str) -> dict[str, str]:
    """Channel -> the address shown for it (partly hidden): every channel the brand
    sends in where the customer has an address, and the link's own channel."""
    found: dict[str, str] = {}
    if customer.email and customer.email_valid:
        found[ChannelKind.EMAIL] = _hide_email(customer.email)
    if customer.phone and customer.phone_valid:
        found[ChannelKind.SMS] = found[ChannelKind.WHATSAPP] = _hide_phone(customer.phone)
    for kind in ContactPoint.objects.filter(customer=customer, is_valid=True).values_list("channel", flat=True):
        push = kind in (ChannelKind.MOBILE_PUSH, ChannelKind.WEB_PUSH)
        found.setdefault(kind, "this device" if push else "your account")
    shown = {kind: address for kind, address in found.items() if backends.aliases(kind)}
    shown.setdefault(channel, found.get(channel, ""))
    return {kind: shown[kind] for kind in ChannelKind.values if kind in shown}


def _resolve(request: HttpRequest, token: str) -> tuple[Link, Customer] | HttpResponse:
    try:
        link = read_token(token)
    except BadToken:
        return _bad_link(
            request,
            "This link is damaged or incomplete. Please open it again from the message you received, "
            "or copy the whole link into your browser.",
        )
    customer = Customer.objects.filter(pk=link.customer_id).first()
    if customer is None:
        return _bad_link(
            request, "We no longer hold any details for this link, so there is nothing to unsubscribe from.", status=404
        )
    return link, customer


def _unsubscribe(link: Link, customer: Customer, *, how: str) -> None:
    set_consent(
        customer=customer,
        channel=link.channel,
        status=ConsentStatus.UNSUBSCRIBED,
        source=ConsentSource.UNSUBSCRIBE_LINK,
        now=timezone.now(),
        detail=_campaign_words(how, link.campaign_id),
    )


def _campaign_words(how: str, campaign_id: int | None) -> str:
    if campaign_id is None:
        return how
    name = Campaign.objects.filter(pk=campaign_id).values_list("name", flat=True).first()
    return f"{how} (campaign {campaign_id}: {name})" if name else f"{how} (campaign {campaign_id})"


def _page(token: str, link: Link, customer: Customer) -> dict[str, Any]:
    shop = shop_for(customer)
    label = ChannelKind(link.channel).label
    return {
        "shop_name": shop.name if shop else "",
        "shop_url": shop.url if shop else "",
        "channel_label": label,
        "what_stops": WHAT_STOPS.get(link.channel, f"marketing messages on {label}"),
        "preferences_path": reverse("marketing_public:preferences", kwargs={"token": token}),
    }


def _bad_link(request: HttpRequest, words: str, status: int = 400) -> HttpResponse:
    shop = Shop.objects.filter(is_active=True).order_by("pk").first()
    context = {
        "shop_name": shop.name if shop else "",
        "shop_url": shop.url if shop else "",
        "support_email": shop.support_email if shop else "",
        "words": words,
    }
    return render(request, "marketing/public/bad_link.html", context, status=status)


def shop_for(customer: Customer) -> Shop | None:
    """The storefront the customer knows us by: the first shop that knew them, else the
    brand's first active shop."""
    identity = customer.identities.select_related("shop").order_by("created_at", "pk").first()
    if identity is not None:
        return identity.shop
    return Shop.objects.filter(is_active=True).order_by("pk").first()


def _hide_email(email: str) -> str:
    name, _, domain = email.partition("@")
    return f"{name[:1]}•••@{domain}"


def _hide_phone(phone: str) -> str:
    return f"••• {phone[-3:]}" if len(phone) > 4 else "•••"
