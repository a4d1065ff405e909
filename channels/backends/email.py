"""Email through Django's email framework: SMTP and every django-anymail ESP.

``EmailBackend`` builds one ``EmailMultiAlternatives`` per message and hands it to the
Django email backend named in ``OPTIONS["EMAIL_BACKEND"]``, so the transport is chosen
by configuration alone. ``CONNECTION`` holds the keyword arguments of that backend.

SMTP::

    "email": {
        "BACKEND": "channels.backends.email.EmailBackend",
        "OPTIONS": {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "CONNECTION": {"host": "smtp.example.com", "port": 587, "use_tls": True,
                           "username": "shop@acme.example", "password": "...", "timeout": 20},
            "DEFAULT_FROM": "Acme <shop@acme.example>",
        },
    }

django-anymail (the ESP's delivery webhooks then reach ``channels.anymail_tracking``)::

    SendGrid  "EMAIL_BACKEND": "anymail.backends.sendgrid.EmailBackend",
              "CONNECTION": {"api_key": "SG...."}
    Postmark  "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
              "CONNECTION": {"server_token": "..."}
    Mailgun   "EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend",
              "CONNECTION": {"api_key": "...", "sender_domain": "mg.acme.example",
                             "api_url": "https://api.eu.mailgun.net/v3/"}   # EU region only
    SES       "EMAIL_BACKEND": "anymail.backends.amazon_ses.EmailBackend",   # needs boto3
              "CONNECTION": {"client_params": {"region_name": "eu-west-1"}}

``data`` keys read (here and by the Gmail and Graph backends, which share
``build_email``): ``from_email``, ``from_name``, ``to_name``, ``reply_to`` (an address
or a list), ``list_unsubscribe_url`` (HTTPS: also sets ``List-Unsubscribe-Post`` for
RFC 8058 one-click), ``list_unsubscribe_mailto``, ``headers`` (extra headers).

Every message carries ``Message-ID: <herald.{digest of the idempotency key}@{sender
domain}>``, so a copy that was somehow sent twice is recognisable, and
``X-Herald-Message: {ledger id}``. The provider id is the ESP's id when anymail reports
one, else that Message-ID.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any, ClassVar

import requests
from anymail.exceptions import AnymailError, AnymailRecipientsRefused
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.validators import validate_email
from django.utils.module_loading import import_string

from channels.backends.base import (
    ChannelBackend,
    HttpChannelBackend,
    OutgoingMessage,
    SendResult,
    excerpt,
    retry_after_seconds,
)
from channels.errors import ChannelError, OutcomeUnknown

# Django's SMTP backend waits forever by default; a stuck server must not hold a worker.
DEFAULT_SMTP_TIMEOUT = 20.0
# Headers that the message's own fields decide; ``data["headers"]`` may not override them.
OWN_HEADERS = {"from", "sender", "to", "cc", "bcc", "reply-to", "message-id", "x-herald-message", "subject"}


def validate_email_address(address: str) -> str:
    """One syntactically valid address, else a permanent error that suppresses it."""
    address = address.strip()
    if not address:
        raise ChannelError("The message has no email address.", permanent=True, code="no_address")
    try:
        validate_email(address)
    except ValidationError:
        raise ChannelError(
            f"{address!r} is not a valid email address.",
            permanent=True,
            suppress_address=True,
            dead_reason="invalid_address",
            code="invalid_address",
        ) from None
    return address


def sender_for(message: OutgoingMessage, options: Mapping[str, Any]) -> str:
    """The From header: ``data["from_email"]``/``from_name``, else ``DEFAULT_FROM``, else a
    mailbox ``USER`` that is an address."""
    data = message.data
    name = str(data.get("from_name") or "")
    address = str(data.get("from_email") or "")
    if not address:
        default = str(options.get("DEFAULT_FROM") or "")
        if not default and "@" in str(options.get("USER", "")):
            default = str(options["USER"])
        if not default:
            raise ChannelError(
                "The email has no sender: set DEFAULT_FROM in the channel's OPTIONS.", permanent=True, code="no_sender"
            )
        if not name:
            return default
        address = parseaddr(default)[1]
    try:
        validate_email(address)
        return str(Address(display_name=name, addr_spec=address)) if name else address
    except (ValidationError, ValueError, IndexError):
        raise ChannelError(f"The sender address {address!r} is not valid.", permanent=True, code="bad_sender") from None


def message_id_for(idempotency_key: str, sender: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "localhost"
    return f"<herald.{digest}@{domain}>"


def unsubscribe_headers(data: Mapping[str, Any]) -> dict[str, str]:
    url = str(data.get("list_unsubscribe_url") or "")
    mailto = str(data.get("list_unsubscribe_mailto") or "")
    if mailto and not mailto.startswith("mailto:"):
        mailto = f"mailto:{mailto}"
    targets = [f"<{target}>" for target in (url, mailto) if target]
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    # RFC 8058: one-click needs an HTTPS URI the mailbox provider can POST to.
    if url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def build_email(message: OutgoingMessage, options: Mapping[str, Any]) -> EmailMultiAlternatives:
    """The email for ``message``, shared by every email backend (SMTP, anymail, Gmail,
    Graph) so all of them send the same headers. Raises a permanent ``ChannelError`` for
    a message that cannot be built."""
    if not message.text.strip():
        raise ChannelError("The email has no plain-text body; every email needs one.", permanent=True, code="no_text")
    data = message.data
    sender = sender_for(message, options)
    to_name = str(data.get("to_name") or "")
    to = str(Address(display_name=to_name, addr_spec=message.address)) if to_name else message.address
    reply_to = data.get("reply_to") or []
    headers = {k: str(v) for k, v in dict(data.get("headers") or {}).items() if k.lower() not in OWN_HEADERS}
    headers.update(unsubscribe_headers(data))
    headers["Message-ID"] = message_id_for(message.idempotency_key, sender)
    headers["X-Herald-Message"] = str(message.id)
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=sender,
        to=[to],
        reply_to=[reply_to] if isinstance(reply_to, str) else list(reply_to),
        headers=headers,
    )
    if message.html:
        email.attach_alternative(message.html, "text/html")
    try:
        email.message()  # header injection and unencodable headers surface here, not mid-send
    except (BadHeaderError, ValueError) as exc:
        raise ChannelError(f"The email cannot be built: {exc}", permanent=True, code="bad_header") from None
    return email


def email_bytes(email: EmailMultiAlternatives) -> bytes:
    return email.message().as_bytes(linesep="\r\n")


class EmailBackend(ChannelBackend):
    kind: ClassVar[str] = "email"
    required_options: ClassVar[tuple[str, ...]] = ("DEFAULT_FROM",)

    def validate_address(self, address: str) -> str:
        return validate_email_address(address)

    def build_payload(self, message: OutgoingMessage) -> EmailMultiAlternatives:
        return build_email(message, self.options)

    def connection(self) -> Any:
        connection = get_connection(self.options.get("EMAIL_BACKEND"), **dict(self.options.get("CONNECTION") or {}))
        if isinstance(connection, SmtpEmailBackend) and connection.timeout is None:
            connection.timeout = DEFAULT_SMTP_TIMEOUT
        return connection

    def post(self, payload: EmailMultiAlternatives, message: OutgoingMessage) -> EmailMultiAlternatives:
        watch = SmtpWatch()
        connection = None
        try:
            connection = self.connection()
            connection.open()
            watch.attach(connection)
            sent = connection.send_messages([payload])
        except AnymailError as exc:  # before OSError: anymail's request errors are OSErrors too
            raise anymail_error(exc, payload, message.address) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc, message.address, after_data=watch.data_started) from None
        except (ImproperlyConfigured, ImportError) as exc:
            words = f"The email backend is misconfigured: {exc}"
            raise ChannelError(words, permanent=True, code="misconfigured") from None
        finally:
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # the verdict is already known; a failed QUIT changes nothing
                    pass
        if not sent:
            words = "The email backend sent nothing (a pre_send handler may have cancelled it)."
            raise ChannelError(words, permanent=True, code="not_sent")
        return payload

    def parse_response(self, answer: EmailMultiAlternatives) -> SendResult:
        status = getattr(answer, "anymail_status", None)
        esp_id = getattr(status, "message_id", None)
        if isinstance(esp_id, set):
            esp_id = min((str(i) for i in esp_id), default=None)
        provider_id = str(esp_id) if esp_id not in (None, "") else answer.extra_headers["Message-ID"]
        return SendResult(provider_message_id=provider_id, response_excerpt=repr(status) if status else "")

    def check(self) -> list[str]:
        problems = super().check()
        path = self.options.get("EMAIL_BACKEND")
        if path:
            try:
                import_string(path)
            except ImportError as exc:
                problems.append(f"cannot import EMAIL_BACKEND {path!r} ({exc})")
        if not isinstance(self.options.get("CONNECTION", {}), Mapping):
            problems.append("has a CONNECTION that is not a dict of the email backend's arguments")
        return problems


class SmtpWatch:
    """Notes when an SMTP session reaches DATA: from then on the server may have queued
    the message even if we never hear its answer."""

    def __init__(self) -> None:
        self.data_started = False

    def attach(self, connection: Any) -> None:
        smtp = getattr(connection, "connection", None)
        if not isinstance(smtp, smtplib.SMTP):
            return
        original = smtp.data

        def data(msg: Any) -> Any:
            self.data_started = True
            return original(msg)

        smtp.data = data  # type: ignore[method-assign]


def smtp_error(exc: Exception, address: str, *, after_data: bool) -> Exception:
    """Map an SMTP failure: 5xx replies are permanent, 4xx and broken connections retry,
    and a connection lost after DATA is an unknown outcome."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        words = f"The mail server refused {address}: {code} {text}"
        if code >= 500:
            dead = mailbox_is_dead(code, text)
            return ChannelError(
                words, permanent=True, suppress_address=dead, dead_reason="hard_bounce", code=f"smtp_{code}"
            )
        return ChannelError(words, permanent=False, code=f"smtp_{code}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return ChannelError(
            f"The mail server refused the username or password in CONNECTION ({exc.smtp_code}).",
            permanent=True,
            code="smtp_auth",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        words = f"The mail server answered {exc.smtp_code} {text}"
        return ChannelError(words, permanent=exc.smtp_code >= 500, code=f"smtp_{exc.smtp_code}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        words = f"The mail server does not support what CONNECTION asks: {exc}"
        return ChannelError(words, permanent=True, code="smtp")
    if after_data:
        return OutcomeUnknown(f"The mail server stopped answering after it was given the message ({exc}).")
    words = f"Could not talk to the mail server ({exc or type(exc).__name__})."
    return ChannelError(words, permanent=False, code="smtp")


def mailbox_is_dead(code: int, reply: str) -> bool:
    """Whether a 5xx to RCPT says the mailbox does not exist, rather than that the server
    refuses us (relaying, policy): a misconfigured relay must not suppress a whole list."""
    enhanced = re.match(r"\s*5\.(\d{1,3})\.(\d{1,3})", reply)
    if enhanced:
        return enhanced.group(1) == "1" or enhanced.groups() == ("2", "1")
    return code in (550, 551, 553) and "relay" not in reply.lower()


def anymail_error(exc: AnymailError, email: EmailMultiAlternatives, address: str) -> Exception:
    esp = exc.esp_name or "The email provider"
    if isinstance(exc, AnymailRecipientsRefused):
        status = getattr(email, "anymail_status", None)
        states = {getattr(r, "status", "") for r in getattr(status, "recipients", {}).values()}
        invalid = "invalid" in states
        why = (
            "the address is invalid"
            if invalid
            else "it is on the provider's suppression list (an earlier bounce, complaint or unsubscribe)"
        )
        return ChannelError(
            f"{esp} refused {address}: {why}.",
            permanent=True,
            suppress_address=True,
            dead_reason="invalid_address" if invalid else "hard_bounce",
            code="recipient_refused",
        )
    if isinstance(exc, requests.ReadTimeout):
        return OutcomeUnknown(f"{esp} did not answer in time; the email may have been sent.")
    if isinstance(exc, requests.RequestException) and exc.status_code is None:
        return ChannelError(f"Could not reach {esp} ({exc.__cause__ or exc}).", permanent=False, code="esp_unreachable")
    status_code, code = exc.status_code, ""
    response = exc.response if isinstance(exc.response, requests.Response) else None
    cause_response = getattr(exc.__cause__, "response", None)
    if status_code is None and isinstance(cause_response, dict):  # boto3 (Amazon SES)
        status_code = cause_response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(cause_response.get("Error", {}).get("Code", ""))
    words = f"{esp} answered {status_code}: {first_line(exc)}" if status_code else f"{esp}: {first_line(exc)}"
    retry = status_code is not None and (status_code == 429 or status_code >= 500)
    retry = retry or code in ("Throttling", "TooManyRequestsException")
    return ChannelError(
        words,
        permanent=not retry,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")) if response is not None else None,
        code=code or (f"esp_{status_code}" if status_code else "esp"),
        response_code=status_code,
        response_excerpt=excerpt(response.text) if response is not None else "",
    )


def first_line(exc: Exception) -> str:
    try:
        text = str(exc)
    except Exception:  # anymail's __str__ reads a response that a hand-made error may lack
        text = " ".join(str(a) for a in exc.args)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]


# --- mailboxes reached over HTTPS with OAuth 2.0 (Gmail, Microsoft Graph) ---------------


@dataclass(frozen=True)
class MailPayload:
    raw: bytes
    message_id: str


@dataclass(frozen=True)
class MailAnswer:
    response: requests.Response
    message_id: str


class MailboxApiBackend(HttpChannelBackend):
    """Sends the RFC 822 bytes of ``build_email`` through a mailbox API. Keeps one access
    token per backend until shortly before it expires; a 401 fetches a fresh one once."""

    kind: ClassVar[str] = "email"
    service: ClassVar[str] = "the provider"
    #: Seconds before the stated expiry at which a token is no longer used.
    token_margin: ClassVar[float] = 120.0

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self._token = ""
        self._token_until = 0.0
        self._token_lock = threading.Lock()

    def token_url(self) -> str:
        raise NotImplementedError

    def token_form(self) -> dict[str, str]:
        raise NotImplementedError

    def token_refused(self, status: int, body: dict[str, Any]) -> ChannelError:
        raise NotImplementedError

    def access_token(self) -> str:
        with self._token_lock:
            if self._token and time.time() < self._token_until:
                return self._token
            try:
                response = self.session.post(self.token_url(), data=self.token_form(), timeout=self.timeout)
            except requests.RequestException as exc:
                words = f"Could not reach {self.service} for an access token ({exc})."
                raise ChannelError(words, permanent=False) from None
            if response.status_code == 429 or response.status_code >= 500:
                raise ChannelError(
                    f"{self.service} answered {response.status_code} to the token request; will retry.",
                    permanent=False,
                    retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    response_code=response.status_code,
                    response_excerpt=excerpt(response.text),
                )
            try:
                body = response.json()
            except ValueError:
                body = {}
            if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
                raise self.token_refused(response.status_code, body if isinstance(body, dict) else {})
            self._token = str(body["access_token"])
            self._token_until = time.time() + float(body.get("expires_in", 3600)) - self.token_margin
            return self._token

    def forget_token(self) -> None:
        with self._token_lock:
            self._token, self._token_until = "", 0.0

    def validate_address(self, address: str) -> str:
        return validate_email_address(address)

    def build_payload(self, message: OutgoingMessage) -> MailPayload:
        email = build_email(message, self.options)
        return MailPayload(raw=email_bytes(email), message_id=email.extra_headers["Message-ID"])

    def post(self, payload: MailPayload, message: OutgoingMessage) -> MailAnswer:
        response = super().post(payload, message)
        if response.status_code == 401:
            # A token can die before its stated expiry (revoked, password changed, clock
            # skew); one fresh token tells a stale token from a refused mailbox.
            self.forget_token()
            response = super().post(payload, message)
        return MailAnswer(response=response, message_id=payload.message_id)

    def check(self) -> list[str]:
        problems = super().check()
        if not self.options.get("DEFAULT_FROM") and "@" not in str(self.options.get("USER", "")):
            problems.append("needs DEFAULT_FROM (the mailbox's address) when USER is not an email address")
        return problems
