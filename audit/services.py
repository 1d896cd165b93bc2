"""Appending to the chain and verifying it."""

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import context, signing
from audit.chain import GENESIS_HASH, HASHED_FIELDS, chain_hash
from audit.models import AuditAction, AuditCheckpoint, AuditEvent, Outcome

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
            # As the CharFields give them back (an int id would hash differently from "5").
            "object_type": str(object_type),
            "object_id": "" if object_id is None else str(object_id),
            "subject_ref": subject_pseudonym(subject_id) if subject_id is not None else "",
            "clinic_id": clinic_id,
            "purpose": str(purpose),
            "outcome": str(outcome),
            "request_id": context.request_id.get(),
            "client_address": context.client_address.get(),
            "details": _as_stored(details or {}),
        }
        event = AuditEvent.objects.create(
            **row, prev_hash=prev_hash, hash=chain_hash(prev_hash, row)
        )
        if _checkpoint_due(seq=seq, now=row["occurred_at"]):
            _checkpoint_write(head_seq=seq, head_hash=event.hash)
        return event


# --- Signed checkpoints ---------------------------------------------------------------------

# When this process last saw a checkpoint: spares a query per append between checkpoints.
_last_checkpoint_seen: datetime | None = None


def _checkpoint_due(*, seq: int, now: datetime) -> bool:
    every = settings.PATTERM_AUDIT_CHECKPOINT_EVERY
    if every and seq % every == 0:
        return True
    interval = settings.PATTERM_AUDIT_CHECKPOINT_MINUTES
    if not interval:
        return False
    interval = timedelta(minutes=interval)
    if _last_checkpoint_seen and now - _last_checkpoint_seen < interval:
        return False
    latest = (
        AuditCheckpoint.objects.order_by("-head_seq").values_list("created_at", flat=True).first()
    )
    if latest is not None:
        # Remembered only once this transaction commits: the checkpoint read may be its own,
        # uncommitted one, which a rollback takes away again.
        transaction.on_commit(lambda: _checkpoint_seen(latest))
    return latest is None or now - latest >= interval


def _checkpoint_write(*, head_seq: int, head_hash: str) -> AuditCheckpoint:
    created_at = timezone.now()
    key, signature = signing.sign(
        signing.checkpoint_message(head_seq=head_seq, head_hash=head_hash, created_at=created_at)
    )
    checkpoint = AuditCheckpoint.objects.create(
        head_seq=head_seq,
        head_hash=head_hash,
        created_at=created_at,
        key_id=key,
        signature=signature,
    )
    transaction.on_commit(lambda: _checkpoint_seen(created_at))
    return checkpoint


def _checkpoint_seen(moment: datetime) -> None:
    global _last_checkpoint_seen
    _last_checkpoint_seen = moment


def checkpoint_create() -> AuditCheckpoint | None:
    """Sign the current head of the chain now (None for an empty chain).

    When the head is signed already, that checkpoint is returned and nothing is written.
    """
    with transaction.atomic():
        _lock_chain_head()
        head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        if head is None:
            return None
        existing = AuditCheckpoint.objects.filter(head_seq=head[0]).first()
        return existing or _checkpoint_write(head_seq=head[0], head_hash=head[1])


# --- Verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    events_checked: int
    head_seq: int | None
    head_hash: str | None
    first_broken_seq: int | None = None
    problem: str = ""
    checkpoints_checked: int = 0

    def as_dict(self) -> dict:
        """The AuditVerify shape of API.md, plus `problem`."""
        return asdict(self)


def chain_verify(
    *,
    chunk_size: int = 2000,
    from_seq: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> ChainVerification:
    """Walk the chain in constant memory and report the first row that does not hold.

    A row is broken when its sequence number is not the next one, when it does not chain from
    the row before it, or when its own hash does not match its content. Signed checkpoints
    catch what the chain alone cannot: a row at a checkpoint whose hash differs from the signed
    one (the chain was rewritten and re-hashed since the checkpoint before it), and a chain that
    ends before a checkpoint (its tail was cut). `from_seq` starts at that row, trusting the
    row before it. `on_progress(n)` is told how many rows were checked since the last call.
    """
    checkpoints = {}
    for checkpoint in AuditCheckpoint.objects.order_by("head_seq"):
        message = signing.checkpoint_message(
            head_seq=checkpoint.head_seq,
            head_hash=checkpoint.head_hash,
            created_at=checkpoint.created_at,
        )
        if not signing.signature_valid(
            key=checkpoint.key_id, signature=checkpoint.signature, message=message
        ):
            return ChainVerification(
                ok=False,
                events_checked=0,
                head_seq=None,
                head_hash=None,
                first_broken_seq=checkpoint.head_seq,
                problem=f"the checkpoint at #{checkpoint.head_seq} has no valid signature",
            )
        if checkpoint.head_seq >= from_seq:
            checkpoints[checkpoint.head_seq] = checkpoint.head_hash

    expected_seq, checked, signed_from = from_seq, 0, from_seq
    expected_prev = GENESIS_HASH
    if from_seq > 1:
        anchor = AuditEvent.objects.filter(seq=from_seq - 1).values_list("hash", flat=True)
        expected_prev = anchor.first()
        if expected_prev is None:
            return _broken(from_seq - 1, 0, None, f"sequence number {from_seq - 1} is missing")
    signed_prev = expected_prev  # the hash of the row before `signed_from`
    rows = AuditEvent.objects.filter(seq__gte=from_seq).order_by("seq")
    for row in rows.values(*HASHED_FIELDS, "prev_hash", "hash").iterator(chunk_size=chunk_size):
        problem, broken_seq = "", expected_seq
        if row["seq"] != expected_seq:
            problem = f"sequence number {expected_seq} is missing"
        elif row["prev_hash"] != expected_prev:
            problem = "does not chain from the row before it"
        elif chain_hash(row["prev_hash"], row) != row["hash"]:
            problem = "its content does not match its hash"
        elif row["seq"] in checkpoints and checkpoints[row["seq"]] != row["hash"]:
            broken_seq = signed_from
            problem = (
                f"rows #{signed_from} to #{row['seq']} were rewritten: row #{row['seq']} does "
                "not match its signed checkpoint"
            )
            # None of the rows since the last good checkpoint can be trusted: report only what
            # that checkpoint vouches for as checked.
            checked, expected_seq, expected_prev = signed_from - from_seq, signed_from, signed_prev
        if problem:
            head = (expected_seq - 1, expected_prev) if expected_seq > from_seq else None
            return _broken(broken_seq, checked, head, problem)
        checked += 1
        if row["seq"] in checkpoints:
            signed_from, signed_prev = row["seq"] + 1, row["hash"]
        expected_seq, expected_prev = expected_seq + 1, row["hash"]
        if on_progress and checked % chunk_size == 0:
            on_progress(chunk_size)
    if on_progress and checked % chunk_size:
        on_progress(checked % chunk_size)
    last_seq = expected_seq - 1
    if checkpoints and max(checkpoints) > last_seq:
        return _broken(
            expected_seq,
            checked,
            (last_seq, expected_prev) if checked else None,
            f"the chain ends at #{last_seq} but a checkpoint signed #{max(checkpoints)}: "
            "its tail was cut",
        )
    return ChainVerification(
        ok=True,
        events_checked=checked,
        head_seq=last_seq if checked else None,
        head_hash=expected_prev if checked else None,
        checkpoints_checked=len(checkpoints),
    )


def _broken(seq: int, checked: int, head: tuple | None, problem: str) -> ChainVerification:
    return ChainVerification(
        ok=False,
        events_checked=checked,
        head_seq=head[0] if head else None,
        head_hash=head[1] if head else None,
        first_broken_seq=seq,
        problem=problem,
    )


def verification_run(
    *,
    actor=None,
    chunk_size: int = 2000,
    from_seq: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> ChainVerification:
    """Verify the chain and record that it was verified, with the result (A.8.15: logs analysed)."""
    result = chain_verify(chunk_size=chunk_size, from_seq=from_seq, on_progress=on_progress)
    event_append(
        action=AuditAction.AUDIT_VERIFY,
        actor=actor,
        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
        details={
            "from_seq": from_seq,
            "events_checked": result.events_checked,
            "checkpoints_checked": result.checkpoints_checked,
            "first_broken_seq": result.first_broken_seq,
        },
    )
    return result


# --- Reading the log ------------------------------------------------------------------------


def events_read(
    *,
    actor,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor_id: int | None = None,
):
    """The auditor's view of the log, oldest first, filtered by time (`since` inclusive,
    `until` exclusive), action and actor id. The read itself is audited, with its filters."""
    listed = AuditEvent.objects.order_by("seq")
    if since:
        listed = listed.filter(occurred_at__gte=since)
    if until:
        listed = listed.filter(occurred_at__lt=until)
    if action:
        listed = listed.filter(action=action)
    if actor_id:
        listed = listed.filter(actor_id=actor_id)
    filters = {"since": since, "until": until, "action": action, "actor": actor_id}
    event_append(
        action=AuditAction.AUDIT_READ,
        actor=actor,
        outcome=Outcome.SUCCESS,
        details={key: str(value) for key, value in filters.items() if value is not None},
    )
    return listed
