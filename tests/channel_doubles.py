"""A minimal JSON provider for testing the base pipeline (the real providers have their
own tests against their documented APIs)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar

import requests

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult
from channels.errors import ChannelError
from channels.receipts import ReceiptEvent, ReceiptRejected, ReceiptsMixin, ReceiptUnreadable

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


class JsonProviderWithReceipts(ReceiptsMixin, JsonProvider):
    """Receipts signed with X-Test-Signature = hex HMAC-SHA256(body, TOKEN)."""

    def verify_receipt(self, request: Any, body: bytes) -> None:
        given = request.headers.get("X-Test-Signature", "")
        expected = hmac.new(self.options["TOKEN"].encode(), body, hashlib.sha256).hexdigest()
        if not given:
            raise ReceiptRejected(401, "Missing the X-Test-Signature header.")
        if not hmac.compare_digest(given, expected):
            raise ReceiptRejected(401, "X-Test-Signature does not match.")

    def parse_receipt(self, headers: dict[str, str], body: bytes, query: str) -> list[ReceiptEvent]:
        try:
            data = json.loads(body)
        except ValueError:
            raise ReceiptUnreadable("The receipt is not JSON.") from None
        if data.get("type") == "inbound" and data.get("text", "").strip().upper() == "STOP":
            return [ReceiptEvent(opt_out_address=data["from"], detail="STOP")]
        return [
            ReceiptEvent(
                kind=data["status"],
                provider_message_id=data["id"],
                provider_event_id=data["event_id"],
                raw=data,
            )
        ]
