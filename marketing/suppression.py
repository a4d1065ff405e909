"""The suppression list: addresses we never write to, transactional or not.

Values are stored normalised, so a lookup is an indexed equality match:

- email: lowercased. Besides exact addresses, two domain patterns:
  ``*@example.com`` (that domain only) and ``*@*.example.com`` (every subdomain of it,
  at any depth, but not ``example.com`` itself: add both rows to cover both).
- SMS and WhatsApp: E.164 (``+15551234567``) when the value parses as a phone number.
- web push: the subscription's endpoint URL (the address is the subscription as JSON,
  whose keys may be re-encoded; the endpoint is what identifies the browser).
- anything else (push tokens, chat user ids): as given, case-sensitive.
- a normalised value longer than 500 characters (a very long token) is stored as
  ``sha256:<hex digest>`` of itself.

A row without a channel suppresses the value in every channel. Staff editing the list
in the admin should store ``normalise_value(channel, value)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q

from channels.kinds import ChannelKind
from marketing.models import Suppression
from marketing.models.audience import SuppressionReason

# Longer values are stored as their digest: the unique index on (value, channel) has an
# entry size limit (about 2.7 kB in PostgreSQL), and a short key keeps lookups cheap.
MAX_VALUE = 500
PHONE_CHANNELS = frozenset({ChannelKind.SMS, ChannelKind.WHATSAPP})
ALL_CHANNELS_WORDS = frozenset({"", "all", "*", "any"})
# Header names accepted for the value column.
VALUE_WORDS = {"email": "value", "address": "value", "phone": "value", "value": "value"}
IMPORT_BATCH = 1000


def normalise_value(channel: str, value: str) -> str:
    """``value`` as the suppression list stores it for ``channel`` ("" for every channel)."""
    value = (value or "").strip()
    if channel == ChannelKind.EMAIL or (not channel and "@" in value):
        value = value.lower()
    elif channel in PHONE_CHANNELS or not channel:
        value = _e164(value) or value
    elif channel == ChannelKind.WEB_PUSH:
        value = _push_endpoint(value) or value
    if len(value) > MAX_VALUE:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def is_suppressed(channel: str, address: str) -> Suppression | None:
    """The row that suppresses ``address`` in ``channel``, or None. An exact match wins
    over a domain pattern, and a row for this channel over one for every channel."""
    value = normalise_value(channel, address)
    if not value:
        return None
    candidates = [value, *_domain_patterns(value)] if channel == ChannelKind.EMAIL else [value]
    rows = list(Suppression.objects.filter(Q(channel=channel) | Q(channel=""), value__in=candidates))
    if not rows:
        return None
    rank = {candidate: i for i, candidate in enumerate(candidates)}
    return min(rows, key=lambda row: (rank[row.value], row.channel == ""))


def suppress(*, value: str, channel: str, reason: str, detail: str = "", now: datetime) -> Suppression:
    """Put ``value`` on the list for ``channel`` ("" for every channel). Idempotent: a
    value already listed keeps its first reason and date."""
    if channel and channel not in ChannelKind.values:
        raise ValueError(f"{channel!r} is not a channel ({', '.join(ChannelKind.values)}).")
    if reason not in SuppressionReason.values:
        raise ValueError(f"{reason!r} is not a suppression reason ({', '.join(SuppressionReason.values)}).")
    normalised = normalise_value(channel, value)
    if not normalised:
        raise ValueError("An empty value cannot be suppressed.")
    row, _ = Suppression.objects.get_or_create(
        value=normalised, channel=channel, defaults={"reason": reason, "detail": detail[:500], "created_at": now}
    )
    return row


@dataclass(frozen=True)
class RowProblem:
    line: int
    text: str
    message: str

    def __str__(self) -> str:
        return f"Line {self.line} ({self.text[:80]}): {self.message}"


@dataclass
class ImportReport:
    """What an import did: rows added, rows already on the list (or repeated in the
    file), and the rows refused with their line numbers. Good rows are kept even when
    others are refused."""

    added: int = 0
    already: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_problems: int = 20) -> str:
        """One message for the admin: the counts, then the first refused lines."""
        words = [f"{self.added} added", f"{self.already} already on the list"]
        if self.problems:
            words.append(f"{len(self.problems)} refused")
        text = "Suppression import: " + ", ".join(words) + "."
        shown = [str(problem) for problem in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            shown.append(f"... and {len(self.problems) - max_problems} more refused lines.")
        return "\n".join([text, *shown])


def import_suppressions_csv(
    file: IO[str] | IO[bytes], *, now: datetime, default_reason: str = "import"
) -> ImportReport:
    """Add the rows of a CSV file to the list. Columns: value[,channel][,reason]; an
    optional header row names them (then in any order). An empty channel (or "all")
    means every channel; an empty reason means ``default_reason``. Accepts a text or a
    binary file (UTF-8, with or without a byte-order mark): the admin passes its
    ``UploadedFile`` as it is and shows ``report.summary()``."""
    if default_reason not in SuppressionReason.values:
        raise ValueError(f"{default_reason!r} is not a suppression reason ({', '.join(SuppressionReason.values)}).")
    report = ImportReport()
    seen: set[tuple[str, str]] = set()
    batch: list[Suppression] = []
    columns, first = _Columns(), True
    for line, cells in _rows(file, report):
        if first:
            first = False
            header = _Columns.from_header(cells)
            if header is not None:
                columns = header
                continue
        item = _read_row(cells, columns, default_reason)
        if isinstance(item, str):
            report.problems.append(RowProblem(line, ",".join(cells), item))
            continue
        if (item.value, item.channel) in seen:
            report.already += 1
            continue
        seen.add((item.value, item.channel))
        item.created_at = now
        batch.append(item)
        if len(batch) >= IMPORT_BATCH:
            _store(batch, report)
            batch = []
    _store(batch, report)
    return report


@dataclass(frozen=True)
class _Columns:
    value: int = 0
    channel: int | None = 1
    reason: int | None = 2

    @classmethod
    def from_header(cls, cells: list[str]) -> _Columns | None:
        """The columns a header row names, or None when the row is data."""
        names = [VALUE_WORDS.get(cell.lower(), cell.lower()) for cell in cells]
        if "value" not in names or not set(names) <= {"value", "channel", "reason", ""}:
            return None

        def where(name: str) -> int | None:
            return names.index(name) if name in names else None

        return cls(value=names.index("value"), channel=where("channel"), reason=where("reason"))

    def pick(self, cells: list[str]) -> tuple[str, str, str]:
        def cell(index: int | None) -> str:
            return cells[index] if index is not None and index < len(cells) else ""

        return cell(self.value), cell(self.channel), cell(self.reason)


def _rows(file: IO[str] | IO[bytes], report: ImportReport) -> Iterator[tuple[int, list[str]]]:
    raw = file.read()
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.problems.append(RowProblem(1, "", "The file is not UTF-8 text; save it as CSV UTF-8 and try again."))
            return
    reader = csv.reader(io.StringIO(raw.removeprefix("\ufeff")))
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if any(cells):
                yield reader.line_num, cells
    except csv.Error as exc:
        report.problems.append(RowProblem(reader.line_num, "", f"The CSV cannot be read from here on: {exc}."))


def _read_row(cells: list[str], columns: _Columns, default_reason: str) -> Suppression | str:
    """The row to store, or why it is refused."""
    value, channel, reason = columns.pick(cells)
    reason = reason.lower() or default_reason
    if not value:
        return "The value is empty."
    if channel.lower() in ALL_CHANNELS_WORDS:
        kind = ""
    elif channel.lower() in ChannelKind.values:
        kind = channel.lower()
    else:
        return f"{channel!r} is not a channel; use one of {', '.join(ChannelKind.values)}, or leave it empty."
    if reason not in SuppressionReason.values:
        return f"{reason!r} is not a reason; use one of {', '.join(SuppressionReason.values)}."
    problem = _value_problem(kind, value)
    if problem:
        return problem
    return Suppression(value=normalise_value(kind, value), channel=kind, reason=reason, detail="Imported from CSV")


def _value_problem(channel: str, value: str) -> str:
    if channel == ChannelKind.EMAIL or (not channel and "@" in value):
        lowered = value.lower()
        if lowered.startswith("*@"):
            domain = lowered.removeprefix("*@").removeprefix("*.")
            return "" if _is_domain(domain) else f"{value!r} is not a domain pattern like *@example.com."
        try:
            validate_email(lowered)
        except ValidationError:
            return f"{value!r} is not an email address (or a pattern like *@example.com)."
        return ""
    if channel in PHONE_CHANNELS and not _e164(value):
        return f"{value!r} is not a phone number in international format (+ and the country code)."
    return ""


def _is_domain(domain: str) -> bool:
    try:
        validate_email(f"someone@{domain}")
    except ValidationError:
        return False
    return True


def _store(batch: list[Suppression], report: ImportReport) -> None:
    if not batch:
        return
    with transaction.atomic():
        existing = _existing(batch)
        fresh = [item for item in batch if (item.value, item.channel) not in existing]
        # A concurrent import or bounce may add the same row meanwhile: the unique
        # constraint keeps one, and this import counts it as added.
        Suppression.objects.bulk_create(fresh, ignore_conflicts=True)
    report.added += len(fresh)
    report.already += len(batch) - len(fresh)


def _existing(batch: list[Suppression]) -> set[tuple[str, str]]:
    rows = Suppression.objects.filter(value__in={item.value for item in batch}).values_list("value", "channel")
    return set(rows)


def _domain_patterns(email: str) -> list[str]:
    _, _, domain = email.rpartition("@")
    if not domain:
        return []
    labels = domain.split(".")
    parents = [".".join(labels[i:]) for i in range(1, len(labels))]
    return [f"*@{domain}", *[f"*@*.{parent}" for parent in parents]]


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _push_endpoint(value: str) -> str:
    try:
        subscription = json.loads(value)
    except ValueError:
        return ""
    endpoint = subscription.get("endpoint") if isinstance(subscription, dict) else None
    return endpoint.strip() if isinstance(endpoint, str) else ""
