"""Prints each message to the worker's standard output: see sends without accounts."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from channels.backends.base import ChannelBackend, OutgoingMessage, SendResult


class ConsoleBackend(ChannelBackend):
    stream: TextIO | None = None

    def build_payload(self, message: OutgoingMessage) -> str:
        lines = [
            "-" * 72,
            f"{message.kind} via {message.alias} to {message.address}  (message #{message.id})",
        ]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        for key, value in sorted(message.data.items()):
            if isinstance(value, (str, int, float)):
                lines.append(f"{key}: {value}")
        lines.append("")
        lines.append(message.text or message.html)
        lines.append("-" * 72)
        return "\n".join(lines) + "\n"

    def post(self, payload: str, message: OutgoingMessage) -> Any:
        stream = self.stream or sys.stdout
        stream.write(payload)
        stream.flush()
        return message.id

    def parse_response(self, answer: Any) -> SendResult:
        return SendResult(provider_message_id=f"console-{answer}")
