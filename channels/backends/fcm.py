"""Mobile push through Firebase Cloud Messaging, HTTP v1 API.

    POST https://fcm.googleapis.com/v1/projects/{PROJECT_ID}/messages:send
    Authorization: Bearer <OAuth 2.0 access token of a service account>

The address is the device's FCM registration token. OPTIONS:

- ``SERVICE_ACCOUNT_FILE`` (path of the JSON key from Firebase console > Project settings >
  Service accounts) or ``SERVICE_ACCOUNT_INFO`` (the same JSON as a dict);
- ``PROJECT_ID`` (default: the key's ``project_id``);
- ``TTL`` (seconds a message waits for an offline device; FCM's default is four weeks).

``data`` keys read: ``title`` (else the subject), ``image`` (https URL), ``link`` (opened
on tap; passed to the app as data), ``priority`` ("high" or "normal"), ``data`` (extra
key/value pairs handed to the app; values are sent as strings).

The access token comes from google-auth, which signs a JWT with the service account's key
and trades it at Google's token endpoint; the request goes through this backend's session.
The credentials object is kept and reused until shortly before the token expires.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import requests
from google.auth import exceptions as google_errors
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import service_account

from channels.backends.base import HttpChannelBackend, OutgoingMessage, SendResult, excerpt
from channels.errors import ChannelError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
SEND_URL = "https://fcm.googleapis.com/v1/projects/{project}/messages:send"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# google-auth waits 120 s for the token endpoint unless told otherwise.
TOKEN_TIMEOUT = (5.0, 20.0)
# FCM error code -> what staff read, and why the token is dead (None: it is not).
EXPLAINED: dict[str, tuple[str, str | None]] = {
    "UNREGISTERED": (
        "FCM says this device token is no longer registered: the app was removed or the token expired.",
        "unregistered",
    ),
    "SENDER_ID_MISMATCH": (
        "FCM says this device token belongs to another Firebase project than {project}.",
        "unregistered",
    ),
    "INVALID_TOKEN": ("FCM says the device token is not a valid registration token ({detail}).", "invalid_address"),
    "INVALID_ARGUMENT": ("FCM rejected the message: {field} is invalid ({detail}).", None),
    "THIRD_PARTY_AUTH_ERROR": (
        "FCM could not hand the message to Apple or the browser: the APNs key or certificate, or the web push "
        "credentials, of the Firebase project {project} are missing or invalid (Project settings > Cloud Messaging).",
        None,
    ),
    "UNAUTHENTICATED": ("FCM refused the access token of {email} even after a fresh one ({detail}).", None),
    "PERMISSION_DENIED": (
        "FCM refused {email} for project {project} ({detail}); check that the Firebase Cloud Messaging API is "
        "enabled and that the account may send messages.",
        None,
    ),
}
DEFAULT_EXPLANATION = ("FCM rejected the message ({code}: {detail}).", None)
RETRYABLE = {
    "QUOTA_EXCEEDED": "FCM says we are over the sending quota",
    "UNAVAILABLE": "FCM is overloaded or unavailable",
    "INTERNAL": "FCM had an internal error",
}


class _TokenRequest(GoogleRequest):
    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        kwargs["timeout"] = kwargs.get("timeout") or TOKEN_TIMEOUT
        return super().__call__(url, method, body, headers, **kwargs)


class FCMBackend(HttpChannelBackend):
    kind: ClassVar[str] = "mobile_push"

    def __init__(self, alias: str, options: Any) -> None:
        super().__init__(alias, options)
        self._credentials: service_account.Credentials | None = None
        self._info: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # --- the service account -------------------------------------------------------------
    def service_account_info(self) -> dict[str, Any]:
        """The service account key as a dict; raises ChannelError naming the option."""
        if self._info is None:
            self._info = _read_service_account(self.options)
        return self._info

    @property
    def project_id(self) -> str:
        return str(self.options.get("PROJECT_ID") or self.service_account_info().get("project_id") or "")

    def access_token(self, *, force: bool = False) -> str:
        with self._lock:
            if self._credentials is None:
                try:
                    self._credentials = service_account.Credentials.from_service_account_info(
                        self.service_account_info(), scopes=[SCOPE]
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise _misconfigured(f"The service account key is not usable ({exc}); create a new key.") from None
            if force or not self._credentials.valid:
                self._refresh(self._credentials)
            return str(self._credentials.token)

    def _refresh(self, credentials: service_account.Credentials) -> None:
        email = credentials.service_account_email
        try:
            # google-auth retries a 5xx from the token endpoint itself, twice, with short sleeps.
            credentials.refresh(_TokenRequest(session=self.session))
        except google_errors.TransportError as exc:
            raise ChannelError(f"Could not reach Google's token service ({exc}).", permanent=False) from None
        except google_errors.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            hint = "" if retryable else " The key may have been deleted or the account disabled; create a new key."
            raise ChannelError(
                f"Google did not give the service account {email} an access token ({exc}).{hint}",
                permanent=not retryable,
                code="auth",
            ) from None

    # --- the request ---------------------------------------------------------------------
    def validate_address(self, address: str) -> str:
        token = super().validate_address(address)
        if re.search(r'[\s{}"<>]', token):
            raise ChannelError(
                "The device token is not an FCM registration token (it has spaces or JSON in it).",
                permanent=True,
                suppress_address=True,
                dead_reason="invalid_address",
                code="invalid_token",
            )
        return token

    def endpoint(self, message: OutgoingMessage) -> str:
        if not self.project_id:
            raise _misconfigured("FCM needs a project id: set PROJECT_ID, or use a key that has project_id.")
        return SEND_URL.format(project=self.project_id)

    def headers(self, message: OutgoingMessage) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.access_token()}"}

    def build_payload(self, message: OutgoingMessage) -> dict[str, Any]:
        extras = message.data
        notification = {"title": extras.get("title") or message.subject, "body": message.text}
        if extras.get("image"):
            notification["image"] = extras["image"]
        # FCM rejects non-string data values (INVALID_ARGUMENT on message.data[n].value).
        data = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (extras.get("data") or {}).items()}
        data["herald_message_id"] = str(message.id)
        link = extras.get("link") or ""
        if link:
            data["link"] = link
        body: dict[str, Any] = {
            "token": message.address,
            "notification": {k: v for k, v in notification.items() if v},
            "data": data,
        }
        android: dict[str, Any] = {}
        priority = str(extras.get("priority") or "").lower()
        if priority in ("high", "normal"):
            android["priority"] = priority.upper()
            body["apns"] = {"headers": {"apns-priority": "10" if priority == "high" else "5"}}
        if self.options.get("TTL") is not None:
            android["ttl"] = f"{int(self.options['TTL'])}s"
        if android:
            body["android"] = android
        # Web clients of the same app open this link on click; FCM takes https only.
        if link.startswith("https://"):
            body["webpush"] = {"fcm_options": {"link": link}}
        return {"message": body}

    def post(self, payload: Any, message: OutgoingMessage) -> requests.Response:
        response = self._post_once(payload, message)
        if response.status_code == 401 and _error_of(response.text)[0] == "UNAUTHENTICATED":
            # Our token was revoked or our clock is off: one fresh token, one more try.
            self.access_token(force=True)
            response = self._post_once(payload, message)
        return response

    def _post_once(self, payload: Any, message: OutgoingMessage) -> requests.Response:
        try:
            return super().post(payload, message)
        except ChannelError as exc:
            if exc.response_code is None:
                raise
            # The base answered 429 or 5xx in general words; say what FCM said.
            code, _, detail = _error_of(exc.response_excerpt)
            what = RETRYABLE.get(code, f"FCM answered {exc.response_code}")
            raise ChannelError(
                f"{what} ({code or exc.response_code}: {detail or 'no detail'}); will retry.",
                permanent=False,
                retry_after=exc.retry_after,
                code=code,
                response_code=exc.response_code,
                response_excerpt=exc.response_excerpt,
            ) from None

    # --- the answer ------------------------------------------------------------------------
    def parse_response(self, answer: requests.Response) -> SendResult:
        body = self.json_or_error(answer)
        if answer.status_code == 200 and isinstance(body, dict) and body.get("name"):
            return SendResult(
                provider_message_id=str(body["name"]), response_code=200, response_excerpt=excerpt(answer.text)
            )
        code, field, detail = _error_of(answer.text)
        # FCM says INVALID_ARGUMENT for a bad token and for a bad field alike; only the
        # message or the named field tells them apart.
        about_token = field == "message.token" or "registration token" in detail.lower()
        key = "INVALID_TOKEN" if code == "INVALID_ARGUMENT" and about_token else code
        template, dead = EXPLAINED.get(key, DEFAULT_EXPLANATION)
        raise ChannelError(
            template.format(
                code=code or answer.status_code,
                project=self.project_id,
                email=self.service_account_info().get("client_email", ""),
                field=field or "a field",
                detail=detail or "no detail",
            ),
            permanent=True,
            suppress_address=dead is not None,
            dead_reason=dead or "invalid_address",
            code=code,
            response_code=answer.status_code,
            response_excerpt=excerpt(answer.text),
        )

    # --- configuration ---------------------------------------------------------------------
    def check(self) -> list[str]:
        problems = super().check()
        try:
            info = _read_service_account(self.options)
        except ChannelError as exc:
            return [*problems, f"cannot load its service account: {exc.message.rstrip('.')}"]
        source = "SERVICE_ACCOUNT_INFO" if self.options.get("SERVICE_ACCOUNT_INFO") else "SERVICE_ACCOUNT_FILE"
        problems += [f"has a {source} without {key}" for key in ("client_email", "private_key") if not info.get(key)]
        if not (self.options.get("PROJECT_ID") or info.get("project_id")):
            problems.append(f"needs PROJECT_ID (the {source} has no project_id)")
        if info.get("client_email") and info.get("private_key"):
            try:
                service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"has a {source} whose private_key cannot be read ({exc})")
        return problems


def _read_service_account(options: dict[str, Any]) -> dict[str, Any]:
    info, source = options.get("SERVICE_ACCOUNT_INFO"), "SERVICE_ACCOUNT_INFO"
    try:
        if not info:
            path = options.get("SERVICE_ACCOUNT_FILE")
            if not path:
                raise _misconfigured(
                    "Neither SERVICE_ACCOUNT_FILE (the path of the service account's JSON key) "
                    "nor SERVICE_ACCOUNT_INFO is set."
                )
            source = f"SERVICE_ACCOUNT_FILE {path}"
            info = Path(path).read_text(encoding="utf-8")
        if isinstance(info, str):
            info = json.loads(info)
    except (OSError, ValueError) as exc:
        raise _misconfigured(f"{source} cannot be read ({exc}).") from None
    if not isinstance(info, dict):
        raise _misconfigured(f"{source} is not a JSON object.")
    return info


def _misconfigured(text: str) -> ChannelError:
    return ChannelError(text, permanent=True, code="misconfigured")


def _error_of(text: str) -> tuple[str, str, str]:
    """(FCM error code or else the status, the invalid field if named, the message) of a v1
    error body; empty strings where the body says nothing."""
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        return "", "", ""
    if not isinstance(error, dict):
        return "", "", str(error)
    code, field = str(error.get("status") or ""), ""
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            code = str(detail["errorCode"])
        if detail.get("@type") == BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations") or [{}]
            field = str(violations[0].get("field") or "")
    return code, field, str(error.get("message") or "")
