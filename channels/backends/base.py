"""The backend contract. The base class owns the pipeline; a provider fills hooks.

    validate_address(address) -> normalised address       (raise ChannelError)
    build_payload(message)     -> what the provider wants   (plain data)
    post(payload, message)     -> the provider's answer     (I/O happens only here)
    parse_response(answer)     -> SendResult                (raise ChannelError)

``send()`` runs them in order. ``HttpChannelBackend`` implements ``post`` with a
``requests.Session`` (timeouts, connection reuse) and turns transport failures into
``ChannelError`` / ``OutcomeUnknown``; a JSON provider then writes ``endpoint``,
``headers``, ``build_payload`` and ``parse_response`` and maps its error codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests

from channels.errors import ChannelError, OutcomeUnknown


@dataclass(frozen=True)
class OutgoingMessage:
    """What a backend is asked to send: plain data copied from the ledger row."""

    id: int
    kind: str
    alias: str
    address: str
    idempotency_key: str
    subject: str = ""
    text: str = ""
    html: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    provider_message_id: str = ""


@dataclass
class SendResult:
    provider_message_id: str = ""
    # "sent" when the provider accepted it; "delivered" when the provider says so at once
    # (a synchronous channel such as a team chat webhook).
    status: str = "sent"
    response_code: int | None = None
    response_excerpt: str = ""


@dataclass(frozen=True)
class RateLimit:
    """``count`` sends per ``seconds``, as a token bucket in Redis."""

    count: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"1/s"``, ``"30/s"``, ``"600/m"``, ``"10000/d"``, ``"3/10s"``."""
        number, _, per = text.partition("/")
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        per = per.strip() or "s"
        unit = per[-1]
        if unit not in units:
            raise ValueError(f"{text!r} is not a rate such as '1/s' or '600/m'")
        span = float(per[:-1] or 1) * units[unit]
        return cls(count=float(number), seconds=span)


class ChannelBackend:
    kind: ClassVar[str]
    #: Options the system check requires in settings.
    required_options: ClassVar[tuple[str, ...]] = ()
    #: A default per-alias rate (``"1/s"``), overridable with the option ``RATE_LIMIT``.
    default_rate_limit: ClassVar[str | None] = None
    #: A default per-address rate (Telegram: one message a second to one chat).
    default_address_rate_limit: ClassVar[str | None] = None
    #: Whether ``fetch_status`` can settle an unknown outcome.
    supports_status_lookup: ClassVar[bool] = False

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        self.alias = alias
        self.options = dict(options)

    # --- the pipeline ---------------------------------------------------------------
    def send(self, message: OutgoingMessage) -> SendResult:
        address = self.validate_address(message.address)
        if address != message.address:
            message = OutgoingMessage(**{**message.__dict__, "address": address})
        payload = self.build_payload(message)
        answer = self.post(payload, message)
        return self.parse_response(answer)

    def validate_address(self, address: str) -> str:
        if not address.strip():
            raise ChannelError("The message has no address.", permanent=True)
        return address.strip()

    def build_payload(self, message: OutgoingMessage) -> Any:
        raise NotImplementedError

    def post(self, payload: Any, message: OutgoingMessage) -> Any:
        raise NotImplementedError

    def parse_response(self, answer: Any) -> SendResult:
        raise NotImplementedError

    # --- reconciliation and limits ----------------------------------------------------
    def fetch_status(self, message: OutgoingMessage) -> str | None:
        """Ask the provider what became of a message whose send timed out: "sent",
        "delivered", "failed", or None when it cannot tell."""
        return None

    def rate_limits(self, message: OutgoingMessage) -> list[tuple[str, RateLimit]]:
        limits = []
        alias_rate = self.options.get("RATE_LIMIT", self.default_rate_limit)
        if alias_rate:
            limits.append((f"alias:{self.alias}", RateLimit.parse(alias_rate)))
        address_rate = self.options.get("ADDRESS_RATE_LIMIT", self.default_address_rate_limit)
        if address_rate:
            limits.append((f"address:{self.alias}:{message.address}", RateLimit.parse(address_rate)))
        return limits

    def check(self) -> list[str]:
        """Configuration problems, in words naming the option. Used by the system check."""
        missing = [name for name in self.required_options if not self.options.get(name)]
        problems = [f"is missing the option {name}" for name in missing]
        for name in ("RATE_LIMIT", "ADDRESS_RATE_LIMIT"):
            if self.options.get(name):
                try:
                    RateLimit.parse(str(self.options[name]))
                except ValueError as exc:
                    problems.append(f"has a bad {name}: {exc}")
        return problems


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def excerpt(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class HttpChannelBackend(ChannelBackend):
    """A backend that speaks HTTP to its provider through one pooled session."""

    #: (connect, read) seconds. A read timeout means the provider may have the message.
    timeout: ClassVar[tuple[float, float]] = (5.0, 20.0)
    method: ClassVar[str] = "POST"

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "Herald/0.1 (+https://github.com/herald-messaging)"

    def endpoint(self, message: OutgoingMessage) -> str:
        raise NotImplementedError

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def request_kwargs(self, payload: Any, message: OutgoingMessage) -> dict[str, Any]:
        """How the payload goes on the wire; JSON by default, a form for form APIs."""
        return {"data": json.dumps(payload)}

    def post(self, payload: Any, message: OutgoingMessage) -> requests.Response:
        try:
            response = self.session.request(
                self.method,
                self.endpoint(message),
                headers=self.headers(message),
                timeout=self.timeout,
                **self.request_kwargs(payload, message),
            )
        except requests.ConnectTimeout as exc:
            # Never connected: the provider cannot have the message.
            raise ChannelError(f"Could not connect to the provider in time ({exc}).", permanent=False) from None
        except requests.ReadTimeout:
            raise OutcomeUnknown("The provider did not answer in time; the message may have been sent.") from None
        except requests.ConnectionError as exc:
            raise ChannelError(f"Could not reach the provider ({exc}).", permanent=False) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise ChannelError(
                f"The provider answered {response.status_code}; will retry.",
                permanent=False,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                response_code=response.status_code,
                response_excerpt=excerpt(response.text),
            )
        return response

    def json_or_error(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ChannelError(
                f"The provider answered {response.status_code} with something that is not JSON.",
                permanent=response.status_code < 500,
                response_code=response.status_code,
                response_excerpt=excerpt(response.text),
            ) from None
