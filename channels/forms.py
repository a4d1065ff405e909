"""The admin's "send a test message" form: one message through one configured alias."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured

from channels.errors import ChannelError
from channels.kinds import ChannelKind
from channels.registry import backends


def alias_choices() -> list[tuple[str, str]]:
    """Every configured alias with the kind it sends; a broken entry is listed too, so
    choosing it explains what is wrong instead of the alias silently missing."""
    choices = []
    for alias in backends.aliases():
        try:
            label = f"{alias} ({ChannelKind(backends.kind_of(alias)).label})"
        except ImproperlyConfigured:
            label = f"{alias} (misconfigured)"
        choices.append((alias, label))
    return choices


class SendTestMessageForm(forms.Form):
    alias = forms.ChoiceField(
        label="Channel",
        help_text="An entry of CHANNEL_BACKENDS and the kind of message it sends.",
        error_messages={
            "required": "Choose the channel to send the test through.",
            "invalid_choice": "No channel %(value)s is configured; choose one from the list.",
        },
    )
    address = forms.CharField(
        max_length=500,
        help_text=(
            "Where the test goes: an email address, a phone number with its country code (+44 7700 900123), "
            "a chat id, a device token, or a web push subscription as JSON."
        ),
        error_messages={"required": "Enter the address to send the test to."},
    )
    subject = forms.CharField(
        max_length=500, required=False, help_text="Needed for email; push notifications show it as their title."
    )
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        initial="This is a test message from Herald.",
        error_messages={"required": "Enter the text of the test message."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["alias"].choices = [("", "---------"), *alias_choices()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        alias = data.get("alias")
        if not alias:
            return data
        try:
            data["kind"] = backends.kind_of(alias)
            backend = backends[alias]
        except ImproperlyConfigured as exc:
            self.add_error("alias", f"This channel cannot send: {exc}")
            return data
        if data["kind"] == ChannelKind.EMAIL and not data.get("subject"):
            self.add_error("subject", "An email needs a subject.")
        if data.get("address"):
            # The backend's own check, so a malformed number is named here and not
            # discovered as a failed message a moment later.
            try:
                data["address"] = backend.validate_address(data["address"])
            except ChannelError as exc:
                self.add_error("address", exc.message)
        return data
