"""The one error type of the transport boundary, and the "we do not know" outcome."""

from __future__ import annotations


class ChannelError(Exception):
    """A send failed. ``permanent`` decides retry or give up; ``retry_after`` (seconds)
    is the provider's own hint; ``suppress_address`` says the provider told us the address
    is dead, and ``dead_reason`` why: "invalid_address", "opted_out", "unregistered",
    "hard_bounce" or "complaint"."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        suppress_address: bool = False,
        dead_reason: str = "invalid_address",
        code: str = "",
        response_code: int | None = None,
        response_excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.suppress_address = suppress_address
        self.dead_reason = dead_reason
        self.code = code
        self.response_code = response_code
        self.response_excerpt = response_excerpt


class OutcomeUnknown(Exception):
    """The request may have reached the provider but no answer came back (a read
    timeout). Sending again could send twice, so the message waits for reconciliation."""
