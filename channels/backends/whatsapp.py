"""WhatsApp Business Cloud API (Meta), kind ``whatsapp``.

Sends ``POST https://graph.facebook.com/{API_VERSION}/{PHONE_NUMBER_ID}/messages`` with
``Authorization: Bearer ACCESS_TOKEN``. The answer's ``messages[0].id`` (a ``wamid.``)
is the provider id that the status webhook names later.

Options: ``ACCESS_TOKEN`` (a system user token), ``PHONE_NUMBER_ID``, ``APP_SECRET`` and
``VERIFY_TOKEN`` (the webhook, see ``meta.py``), ``API_VERSION`` (default v21.0),
``LANGUAGE`` (a template's language when ``data`` names none, default ``en_US``),
``DEFAULT_REGION`` (for numbers stored without ``+``, see ``sms.py``) and ``RATE_LIMIT``
(default 80/s: Meta's documented default throughput of one business phone number)::

    "whatsapp": {
        "BACKEND": "channels.backends.whatsapp.WhatsAppBackend",
        "OPTIONS": {"ACCESS_TOKEN": "EAAG...", "PHONE_NUMBER_ID": "106540352242922",
                    "APP_SECRET": "...", "VERIFY_TOKEN": "a string you type into the app dashboard"}
    }

``data`` keys read:

- ``template``: ``{"name", "language", "body_parameters", "header_parameters",
  "button_url_parameter"}``. Parameters are a list of values (positional ``{{1}}``) or a
  dict (named parameters); a value that is itself a dict is passed through as a Graph
  parameter object (an image header, a currency). The template must be approved in
  WhatsApp Manager. This is the only way to write first, or again after 24 hours.
- no ``template``: ``message.text`` goes as a plain text message. WhatsApp accepts that
  only inside the 24-hour customer service window (the customer wrote to the business
  in the last 24 hours); outside it the send fails with 131047.
- ``link``: with a text message, asks WhatsApp to preview the first URL in the text.

Addresses are phone numbers in E.164; WhatsApp wants the digits without the "+".

Receipts: subscribe the app's WhatsApp Business Account webhook, field ``messages``, to
``/channels/receipts/<alias>/``. Statuses ``sent``, ``delivered``, ``read`` (recorded as
opened) and ``failed`` name our ``wamid``; a failure with 131026 reports the number dead.
An inbound message reading STOP opts the number out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.backends.meta import (
    DEFAULT_API_VERSION,
    GRAPH_URL,
    ErrorTable,
    MetaWebhookMixin,
    graph_error,
    load_webhook,
    unix_time,
)
from channels.backends.sms import PhoneAddressMixin
from channels.errors import ChannelError
from channels.models import EventKind
from channels.receipts import ReceiptEvent

# The Cloud API's documented send errors: permanent?, dead reason, advice for staff.
SEND_ERRORS: ErrorTable = {
    131026: (
        True,
        "invalid_address",
        "WhatsApp cannot deliver to this number: it is not on WhatsApp, or its app is too old",
    ),
    131047: (
        True,
        None,
        "More than 24 hours have passed since this customer last wrote, so WhatsApp only accepts an approved "
        "template now; give the campaign an approved WhatsApp template",
    ),
    131051: (True, None, "WhatsApp does not support this message type"),
    132000: (True, None, "The number of template parameters does not match the approved template"),
    132001: (True, None, "The template does not exist in this language, or is not approved yet"),
    100: (True, None, "WhatsApp rejected a parameter of the message"),
    190: (
        True,
        None,
        "The WhatsApp access token has expired or was revoked; create a new system user token in Meta "
        "Business Settings and update ACCESS_TOKEN",
    ),
    130429: (False, None, "WhatsApp says we send faster than this number's throughput; will retry"),
    131056: (False, None, "Too many messages to this one customer in a short time (pair rate limit); will retry"),
    131048: (False, None, "WhatsApp limits this number for spam (too many messages blocked or reported); will retry"),
    80007: (False, None, "The WhatsApp Business Account reached its rate limit; will retry"),
    131000: (False, None, "WhatsApp had an internal error; will retry"),
    131016: (False, None, "WhatsApp is temporarily unavailable; will retry"),
    133004: (False, None, "WhatsApp's server is temporarily unavailable; will retry"),
}
UNDELIVERABLE = 131026

STATUS_EVENTS = {
    "sent": EventKind.SENT,
    "delivered": EventKind.DELIVERED,
    "read": EventKind.OPENED,
    "failed": EventKind.FAILED,
}
STOP_WORDS = frozenset({"STOP"})


class WhatsAppBackend(PhoneAddressMixin, MetaWebhookMixin, HttpChannelBackend):
    kind: ClassVar[str] = "whatsapp"
    required_options: ClassVar[tuple[str, ...]] = ("ACCESS_TOKEN", "PHONE_NUMBER_ID", "APP_SECRET", "VERIFY_TOKEN")
    default_rate_limit: ClassVar[str | None] = "80/s"

    def endpoint(self, message: OutgoingMessage) -> str:
        version = self.options.get("API_VERSION") or DEFAULT_API_VERSION
        return f"{GRAPH_URL}/{version}/{self.options['PHONE_NUMBER_ID']}/messages"

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.options['ACCESS_TOKEN']}"}

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.address.lstrip("+"),
        }
        template = message.data.get("template")
        if template:
            payload["type"] = "template"
            payload["template"] = self._template(template)
        else:
            if not message.text.strip():
                raise ChannelError("The WhatsApp message has neither a template nor text.", permanent=True)
            payload["type"] = "text"
            payload["text"] = {"preview_url": bool(message.data.get("link")), "body": message.text}
        return payload

    def _template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(template, Mapping) or not template.get("name"):
            raise ChannelError("The WhatsApp template has no name.", permanent=True)
        components: list[dict[str, Any]] = []
        if template.get("header_parameters"):
            components.append({"type": "header", "parameters": _parameters(template["header_parameters"])})
        if template.get("body_parameters"):
            components.append({"type": "body", "parameters": _parameters(template["body_parameters"])})
        if template.get("button_url_parameter"):
            components.append(
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": str(template["button_url_parameter"])}],
                }
            )
        built: dict[str, Any] = {
            "name": str(template["name"]),
            "language": {"code": str(template.get("language") or self.options.get("LANGUAGE") or "en_US")},
        }
        if components:
            built["components"] = components
        return built

    def parse_response(self, answer: requests.Response) -> SendResult:
        error = graph_error(answer)
        if error is not None:
            raise error.mapped(SEND_ERRORS, "WhatsApp")
        body = self.json_or_error(answer)
        try:
            provider_id = str(body["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise ChannelError(
                "WhatsApp accepted the request but named no message id.",
                permanent=True,
                response_code=answer.status_code,
                response_excerpt=excerpt(answer.text),
            ) from None
        return SendResult(provider_message_id=provider_id, response_code=answer.status_code)

    # --- receipts: the "messages" webhook field of the WhatsApp Business Account ---------
    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        events: list[ReceiptEvent] = []
        for entry in load_webhook(body, "whatsapp_business_account"):
            for change in entry.get("changes") or []:
                value = change.get("value") if isinstance(change, dict) else None
                if not isinstance(value, dict):
                    continue
                events.extend(_status_event(status) for status in value.get("statuses") or [] if _known(status))
                events.extend(_opt_out(inbound) for inbound in value.get("messages") or [] if _is_stop(inbound))
        return events


def _parameters(values: Any) -> list[dict[str, Any]]:
    if isinstance(values, Mapping):
        return [{"type": "text", "parameter_name": str(name), "text": str(value)} for name, value in values.items()]
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [value if isinstance(value, Mapping) else {"type": "text", "text": str(value)} for value in values]


def _known(status: Any) -> bool:
    return isinstance(status, dict) and bool(status.get("id")) and status.get("status") in STATUS_EVENTS


def _status_event(status: dict[str, Any]) -> ReceiptEvent:
    name = status["status"]
    errors = [e for e in status.get("errors") or [] if isinstance(e, dict)]
    detail, dead = "", None
    if errors:
        first = errors[0]
        data = first.get("error_data") if isinstance(first.get("error_data"), dict) else {}
        words = data.get("details") or first.get("message") or first.get("title") or ""
        detail = f"WhatsApp: {words} ({first.get('code')})"
        if first.get("code") == UNDELIVERABLE:
            dead = "invalid_address"
    return ReceiptEvent(
        kind=STATUS_EVENTS[name],
        provider_message_id=str(status["id"]),
        occurred_at=unix_time(status.get("timestamp")),
        # One status per message, repeated by Meta on redelivery: counted once.
        provider_event_id=f"{status['id']}:{name}",
        detail=detail,
        address_dead=dead,
        raw=status,
    )


def _is_stop(inbound: Any) -> bool:
    if not isinstance(inbound, dict) or not inbound.get("from"):
        return False
    text = inbound.get("text") if isinstance(inbound.get("text"), dict) else {}
    button = inbound.get("button") if isinstance(inbound.get("button"), dict) else {}
    said = text.get("body") or button.get("text") or ""
    return str(said).strip().upper() in STOP_WORDS


def _opt_out(inbound: dict[str, Any]) -> ReceiptEvent:
    return ReceiptEvent(opt_out_address=f"+{inbound['from']}", detail="The customer wrote STOP on WhatsApp.")
