"""Microsoft Graph: ``sendMail`` from an Exchange Online (Microsoft 365) mailbox.

    "email-m365": {
        "BACKEND": "channels.backends.graph.GraphBackend",
        "KIND": "email",
        "OPTIONS": {"TENANT_ID": "...", "CLIENT_ID": "...", "CLIENT_SECRET": "...",
                    "USER": "shop@acme.example"},   # DEFAULT_FROM defaults to USER
    }

The app registration needs the ``Mail.Send`` *application* permission with admin
consent; the token is the client-credentials grant at
``https://login.microsoftonline.com/{TENANT_ID}/oauth2/v2.0/token`` with scope
``https://graph.microsoft.com/.default``, kept until shortly before it expires.

Why the MIME form: sendMail takes either JSON (``message`` with
``internetMessageHeaders``) or the base64 of an RFC 822 message posted as
``text/plain``. JSON accepts only custom headers whose names start with ``X-``, so it
cannot carry ``List-Unsubscribe``/``List-Unsubscribe-Post`` (which Gmail and Yahoo
require of bulk senders) nor our ``Message-ID``; the MIME form carries every header of
``channels.backends.email.build_email``, identical to what SMTP and Gmail send. The
price: a MIME send is always saved to the mailbox's Sent Items (``saveToSentItems`` is a
JSON-only parameter), so use a dedicated sending mailbox or a retention policy.

sendMail answers ``202 Accepted`` with no body and no id, so the provider id is our own
Message-ID. Graph sends no delivery receipts. Errors: 429/503/504 retry after
``Retry-After``; 400 ``ErrorInvalidRecipients`` is permanent and suppresses the address;
a 401 fetches a fresh token once; 403 ``ErrorAccessDenied`` names the missing permission.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar
from urllib.parse import quote

from channels.backends.base import OutgoingMessage, SendResult, excerpt
from channels.backends.email import MailAnswer, MailboxApiBackend, MailPayload
from channels.errors import ChannelError

TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
SEND_URL = "https://graph.microsoft.com/v1.0/users/{user}/sendMail"
SCOPE = "https://graph.microsoft.com/.default"


class GraphBackend(MailboxApiBackend):
    service: ClassVar[str] = "Microsoft"
    required_options: ClassVar[tuple[str, ...]] = ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "USER")
    # Exchange Online accepts 30 messages a minute from one mailbox.
    default_rate_limit: ClassVar[str | None] = "30/m"

    def token_url(self) -> str:
        return TOKEN_URL.format(tenant=quote(str(self.options["TENANT_ID"]), safe=""))

    def token_form(self) -> dict[str, str]:
        return {
            "client_id": self.options["CLIENT_ID"],
            "client_secret": self.options["CLIENT_SECRET"],
            "scope": SCOPE,
            "grant_type": "client_credentials",
        }

    def token_refused(self, status: int, body: dict[str, Any]) -> ChannelError:
        error = str(body.get("error", ""))
        # AADSTS descriptions end with trace and correlation ids staff do not need.
        detail = str(body.get("error_description", "")).split("\r\n")[0].split(" Trace ID:")[0] or error
        if error in ("invalid_client", "unauthorized_client"):
            words = (
                f"Microsoft does not accept CLIENT_ID and CLIENT_SECRET ({detail}); check the app registration "
                "and its secret's expiry."
            )
        elif error == "invalid_request":
            words = f"Microsoft refused the token request ({detail}); check TENANT_ID."
        else:
            words = f"Microsoft refused the token request: {detail or f'HTTP {status}'}."
        return ChannelError(words, permanent=True, code=f"oauth_{error or status}", response_code=status)

    def endpoint(self, message: OutgoingMessage) -> str:
        return SEND_URL.format(user=quote(str(self.options["USER"]), safe="@"))

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "text/plain", "Authorization": f"Bearer {self.access_token()}"}

    def request_kwargs(self, payload: MailPayload, message: OutgoingMessage) -> dict[str, Any]:
        return {"data": base64.b64encode(payload.raw)}

    def parse_response(self, answer: MailAnswer) -> SendResult:
        response = answer.response
        if response.status_code == 202:
            return SendResult(provider_message_id=answer.message_id, response_code=202)
        raise self.graph_error(response.status_code, response.text)

    def graph_error(self, status: int, text: str) -> ChannelError:
        try:
            error = json.loads(text).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = str(error.get("code", "")) or f"http_{status}"
        said = str(error.get("message") or text[:200] or f"HTTP {status}")
        user = self.options["USER"]
        common = {"code": code, "response_code": status, "response_excerpt": excerpt(text)}
        if code == "ErrorInvalidRecipients":
            return ChannelError(
                f"Microsoft refused the recipient: {said}",
                permanent=True,
                suppress_address=True,
                dead_reason="invalid_address",
                **common,
            )
        if status == 401:
            return ChannelError(
                f"Microsoft refused a freshly issued access token ({said}); check the app registration.",
                permanent=True,
                **common,
            )
        if code == "ErrorAccessDenied":
            return ChannelError(
                f"Microsoft denied sending from {user} ({said}). The app registration needs the Mail.Send "
                "application permission with admin consent, and any application access policy must include "
                "this mailbox.",
                permanent=True,
                **common,
            )
        if code == "ErrorSendAsDenied":
            return ChannelError(
                f"The mailbox {user} may not send as this message's From address ({said}); grant it Send As "
                "or use its own address.",
                permanent=True,
                **common,
            )
        if status == 404:
            return ChannelError(
                f"Microsoft has no mailbox {user} in this tenant ({said}); check USER.", permanent=True, **common
            )
        return ChannelError(f"Microsoft Graph refused the message ({code}): {said}", permanent=True, **common)
