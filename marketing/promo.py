"""Promo code pools: import, generate, and issue a code once per customer and send."""

from __future__ import annotations

import csv
import io
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction

from marketing.models import PromoCode, PromoPool
from orders.models import Customer

_ALPHABET = {"#": string.digits, "?": "ABCDEFGHJKLMNPQRSTUVWXYZ"}  # no I or O: read aloud, they confuse


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)


def import_codes_csv(*, pool: PromoPool, file: io.TextIOBase | str) -> ImportReport:
    """One code per row (the first column); a header row named "code" is skipped."""
    text = file if isinstance(file, str) else file.read()
    report = ImportReport()
    codes = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        value = (row[0] if row else "").strip()
        if not value or (number == 1 and value.lower() == "code"):
            continue
        if len(value) > 100:
            report.problems.append(f"Line {number}: the code is longer than 100 characters.")
            continue
        codes.append(value)
    before = PromoCode.objects.filter(pool=pool).count()
    PromoCode.objects.bulk_create([PromoCode(pool=pool, code=c) for c in codes], ignore_conflicts=True)
    report.added = PromoCode.objects.filter(pool=pool).count() - before
    report.duplicates = len(codes) - report.added
    return report


def generate_codes(*, pool: PromoPool, count: int) -> int:
    """Add ``count`` new codes from the pool's pattern (``WELCOME-####``: # a digit, ? a
    letter). Returns how many were added (collisions are skipped and retried)."""
    if not pool.pattern or not any(c in pool.pattern for c in _ALPHABET):
        raise ValueError("The pool needs a pattern with # (digit) or ? (letter), e.g. WELCOME-####.")
    added = 0
    for _ in range(5):
        if added >= count:
            break
        batch = {
            "".join(secrets.choice(_ALPHABET[c]) if c in _ALPHABET else c for c in pool.pattern)
            for _ in range(count - added)
        }
        before = PromoCode.objects.filter(pool=pool).count()
        PromoCode.objects.bulk_create([PromoCode(pool=pool, code=c) for c in batch], ignore_conflicts=True)
        added += PromoCode.objects.filter(pool=pool).count() - before
    return added


def issue_code(*, pool: PromoPool, customer: Customer, send_key: str, now: datetime) -> PromoCode | None:
    """The code this customer holds from ``pool``, issuing a free one if they hold none.

    Parallel sends never hand out one code twice: a free code is claimed with
    ``FOR UPDATE SKIP LOCKED``, and the unique constraints (one code per customer and
    pool, one per send key) settle the race between two sends to the same customer.
    Returns None when the pool is empty.
    """
    with transaction.atomic():
        # Two sends to one customer wait for each other here, so the second finds the
        # first's code instead of locking a free one that others then skip.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"promo:{pool.pk}:{customer.pk}"])
        return _issue(pool=pool, customer=customer, send_key=send_key, now=now)


def _issue(*, pool: PromoPool, customer: Customer, send_key: str, now: datetime) -> PromoCode | None:
    held = PromoCode.objects.filter(pool=pool, customer=customer).first()
    if held is not None:
        return held
    table = PromoCode._meta.db_table
    for _ in range(3):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"""
                        UPDATE {table} SET customer_id = %s, send_key = %s, issued_at = %s
                        WHERE id = (
                            SELECT id FROM {table}
                            WHERE pool_id = %s AND issued_at IS NULL
                            ORDER BY id
                            FOR UPDATE SKIP LOCKED
                            LIMIT 1
                        )
                        RETURNING id
                        """,
                        [customer.pk, send_key[:300], now, pool.pk],
                    )
                    row = cursor.fetchone()
            if row is None:
                return None
            return PromoCode.objects.get(pk=row[0])
        except IntegrityError:
            # Another send to this customer won; theirs is the customer's code.
            held = PromoCode.objects.filter(pool=pool, customer=customer).first()
            if held is not None:
                return held
    return PromoCode.objects.filter(pool=pool, customer=customer).first()


def peek_code(*, pool: PromoPool, customer: Customer) -> str:
    """For previews and dry runs: the code the customer holds, or a sample, issuing nothing."""
    held = PromoCode.objects.filter(pool=pool, customer=customer).first()
    if held is not None:
        return held.code
    free = PromoCode.objects.filter(pool=pool, issued_at__isnull=True).order_by("id").first()
    return free.code if free else "NO-CODE-LEFT"
