"""A minimal JSON provider for testing the base pipeline (the real providers have their
own tests against their documented APIs)."""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult
from channels.errors import ChannelError

ENDPOINT = "https://provider.test/v1/messages"


class JsonProvider(HttpChannelBackend):
    kind: ClassVar[str] = "sms"
    required_options: ClassVar[tuple[str, ...]] = ("TOKEN",)
    supports_status_lookup: ClassVar[bool] = True

    def endpoint(self, message: OutgoingMessage) -> str:
        return ENDPOINT

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.options['TOKEN']}"}

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        return {"to": message.address, "body": message.text, "reference": message.idempotency_key}

    def parse_response(self, answer: requests.Response) -> SendResult:
        body = self.json_or_error(answer)
        if answer.status_code >= 400:
            raise ChannelError(
                body.get("error", "rejected"),
                permanent=True,
                suppress_address=body.get("code") == "dead",
                code=str(body.get("code", "")),
                response_code=answer.status_code,
            )
        return SendResult(provider_message_id=body["id"], response_code=answer.status_code)

    def fetch_status(self, message: OutgoingMessage) -> str | None:
        answer = self.session.get(f"{ENDPOINT}?reference={message.idempotency_key}", timeout=self.timeout)
        found = answer.json().get("status")
        return found if found in ("sent", "delivered", "failed") else None
