"""Appending to the chain and verifying it."""

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import context
from audit.chain import GENESIS_HASH, HASHED_FIELDS, chain_hash
from audit.models import AuditEvent

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that serialises appends.
APPEND_LOCK_KEY = 0x70617474_65726D01


def subject_pseudonym(patient_id: int) -> str:
    """The keyed hash that stands for a patient in audit rows (HMAC-SHA-256, 128 bits shown).

    Stable for one key, so an auditor can follow one subject through the log; meaningless
    without the key, so the log names nobody.
    """
    key = settings.PATTERM_AUDIT_PSEUDONYM_KEY.encode()
    return hmac.new(key, f"patient:{patient_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _as_stored(details: dict) -> dict:
    """`details` as the database gives them back, so that the hash matches what is read later.

    A JSON round trip (tuples become lists, keys strings), with whole floats as integers:
    PostgreSQL's jsonb prints 1e20 as 100000000000000000000 and -0.0 as 0.
    """

    def number(text: str) -> float | int:
        value = float(text)
        return int(value) if value.is_integer() else value

    return json.loads(json.dumps(details), parse_float=number)


def _lock_chain_head() -> None:
    """Serialise appends so that two writers never chain from the same head.

    PostgreSQL: a transaction-scoped advisory lock, released at commit or rollback. SQLite: the
    settings open every transaction with BEGIN IMMEDIATE, so this transaction already holds the
    database's single write lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_KEY])


def event_append(
    *,
    action: str,
    actor=None,
    outcome: str,
    object_type: str = "",
    object_id: str = "",
    subject_id: int | None = None,
    clinic_id: int | None = None,
    purpose: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction (or a new one)."""
    with transaction.atomic():
        _lock_chain_head()
        head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        row = {
            "seq": seq,
            "occurred_at": timezone.now(),
            "actor_id": getattr(actor, "pk", None),
            "actor_role": getattr(actor, "role", "") or "",
            "action": str(action),
            "object_type": object_type,
            "object_id": object_id,
            "subject_ref": subject_pseudonym(subject_id) if subject_id is not None else "",
            "clinic_id": clinic_id,
            "purpose": purpose,
            "outcome": str(outcome),
            "request_id": context.request_id.get(),
            "client_address": context.client_address.get(),
            "details": _as_stored(details or {}),
        }
        return AuditEvent.objects.create(
            **row, prev_hash=prev_hash, hash=chain_hash(prev_hash, row)
        )


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    events_checked: int
    head_seq: int | None
    head_hash: str | None
    first_broken_seq: int | None = None
    problem: str = ""


def chain_verify(
    *, chunk_size: int = 2000, on_progress: Callable[[int], None] | None = None
) -> ChainVerification:
    """Walk the whole chain in constant memory and report the first row that does not hold.

    A row is broken when its sequence number is not the next one, when it does not chain from the
    row before it, or when its own hash does not match its content. `on_progress(n)` is told how
    many rows were checked since the last call.
    """
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
    rows = AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "prev_hash", "hash")
    for row in rows.iterator(chunk_size=chunk_size):
        problem = ""
        if row["seq"] != expected_seq:
            problem = f"sequence number {expected_seq} is missing"
        elif row["prev_hash"] != expected_prev:
            problem = "does not chain from the row before it"
        elif chain_hash(row["prev_hash"], row) != row["hash"]:
            problem = "its content does not match its hash"
        if problem:
            return ChainVerification(
                ok=False,
                events_checked=checked,
                head_seq=expected_seq - 1 or None,
                head_hash=None if expected_seq == 1 else expected_prev,
                first_broken_seq=expected_seq,
                problem=problem,
            )
        checked += 1
        expected_seq, expected_prev = expected_seq + 1, row["hash"]
        if on_progress and checked % chunk_size == 0:
            on_progress(chunk_size)
    if on_progress and checked % chunk_size:
        on_progress(checked % chunk_size)
    return ChainVerification(
        ok=True,
        events_checked=checked,
        head_seq=checked or None,
        head_hash=expected_prev if checked else None,
    )
