"""An in-memory outbox for tests: every send is appended to ``outbox``."""

from __future__ import annotations

from typing import Any

from channels.backends.base import ChannelBackend, OutgoingMessage, SendResult

outbox: list[OutgoingMessage] = []


class LocmemBackend(ChannelBackend):
    """Serves any kind. ``OPTIONS={"FAIL": "..."}`` makes every send fail permanently
    with that message, for tests of failure paths."""

    def build_payload(self, message: OutgoingMessage) -> OutgoingMessage:
        return message

    def post(self, payload: OutgoingMessage, message: OutgoingMessage) -> Any:
        from channels.errors import ChannelError

        if self.options.get("FAIL"):
            raise ChannelError(str(self.options["FAIL"]), permanent=True, code="locmem")
        outbox.append(payload)
        return len(outbox)

    def parse_response(self, answer: Any) -> SendResult:
        return SendResult(provider_message_id=f"locmem-{answer}")
