"""Writes each message as a JSON file into a folder (``OPTIONS={"PATH": "var/outbox"}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from channels.backends.base import ChannelBackend, OutgoingMessage, SendResult


class FileBackend(ChannelBackend):
    required_options: ClassVar[tuple[str, ...]] = ("PATH",)

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        return {
            "id": message.id,
            "kind": message.kind,
            "alias": message.alias,
            "to": message.address,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "data": dict(message.data),
            "idempotency_key": message.idempotency_key,
        }

    def post(self, payload: dict[str, Any], message: OutgoingMessage) -> Any:
        folder = Path(self.options["PATH"]) / message.kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{message.id:08d}.json"
        # Write then rename, so a reader never sees half a message.
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
        temporary.replace(path)
        return path.name

    def parse_response(self, answer: Any) -> SendResult:
        return SendResult(provider_message_id=f"file-{answer}")
