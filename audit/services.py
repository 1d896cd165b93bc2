"""Staging events, verifying the log, and the proofs an auditor or a patient asks for.

Writers stage (`event_append`: one INSERT in the caller's transaction, no lock shared with other
writers); the integrator (audit/integrator.py) makes staged events leaves of the Merkle tree and
signs checkpoints; `chain_verify` recomputes the whole tree from the events.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from itertools import chain

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit import context, integrator, signing, tlog
from audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_json, canonical_leaf, chain_hash
from audit.integrator import checkpoint_create, read_hashes  # noqa: F401 (public here)
from audit.models import (
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditTreeCheckpoint,
    AuditTreeHash,
    Outcome,
)
from audit.verify_export import Broken, TreeBuilder
from patterm.errors import DomainError, NotFound

MESSAGE_NO_CHECKPOINT = _("The audit log has no signed checkpoint yet.")
MESSAGE_NO_SUCH_CHECKPOINT = _(
    "No checkpoint signs a tree of {size} events ({field}): ask for the size of a checkpoint."
)
MESSAGE_INDEX_OUTSIDE = _("Leaf {index} is not in the tree of {size} events.")
MESSAGE_FROM_AFTER_TO = _("from must not be larger than to.")
MESSAGE_NOT_YET_SIGNED = _(
    "This entry is not in a signed checkpoint yet. Please try again in a few minutes."
)


def subject_pseudonym(patient_id: int) -> str:
    """The keyed hash that stands for a patient in audit rows (HMAC-SHA-256, 128 bits shown).

    Stable for one key, so an auditor can follow one subject through the log; meaningless
    without the key, so the log names nobody.
    """
    key = settings.PATTERM_AUDIT_PSEUDONYM_KEY.encode()
    return hmac.new(key, f"patient:{patient_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _as_stored(details: dict) -> dict:
    """`details` as the database gives them back, so that the leaf matches what is read later.

    A JSON round trip (tuples become lists, keys strings), with whole floats as integers:
    PostgreSQL's jsonb prints 1e20 as 100000000000000000000 and -0.0 as 0.
    """

    def number(text: str) -> float | int:
        value = float(text)
        return int(value) if value.is_integer() else value

    return json.loads(json.dumps(details), parse_float=number)


# The columns a writer fills: the hashed ones but `seq`, which comes from the database
# (`leaf_index` comes from the integrator).
_STAGED_COLUMNS = tuple(name for name in HASHED_FIELDS if name != "seq")


# The columns whose values the database layer adapts (a time zone, an address's one spelling,
# JSON); the others are plain str, int or None by construction and are passed as they are.
_ADAPTED_COLUMNS = ("occurred_at", "client_address", "details")


@lru_cache(maxsize=4)
def _staging_statement(vendor: str, returning: bool) -> tuple[str, tuple]:
    """The one INSERT a writer runs, compiled once (bench/audit.py: the ORM's save machinery
    was most of a staged event's cost beyond the INSERT itself), and the positions and fields
    of the values that the fields' own `get_db_prep_save` prepares, as the ORM would."""
    adapted = tuple(
        (_STAGED_COLUMNS.index(name), AuditEvent._meta.get_field(name)) for name in _ADAPTED_COLUMNS
    )
    sql = (
        f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(_STAGED_COLUMNS)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(_STAGED_COLUMNS))})"
    )
    return sql + (" RETURNING seq" if returning else ""), adapted


def _stage(values: dict) -> AuditEvent:
    returning = connection.features.can_return_columns_from_insert
    sql, adapted = _staging_statement(connection.vendor, returning)
    params = [values[name] for name in _STAGED_COLUMNS]
    for position, field in adapted:
        params[position] = field.get_db_prep_save(params[position], connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        seq = cursor.fetchone()[0] if returning else cursor.lastrowid
    event = AuditEvent(seq=seq, **values)
    event._state.adding, event._state.db = False, connection.alias
    return event


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
    """Stage one event inside the caller's transaction: a plain INSERT, so writers never wait
    for each other. If it fails, the caller's whole transaction is rolled back (no savepoint: a
    caller catching the error cannot commit its change without its event). The integrator makes
    it a leaf of the tree once the transaction has committed.

    Outside a transaction (autocommit: a read that changes nothing else, decision 0023) the
    INSERT is a transaction of its own, committed durably when it returns: one round trip
    instead of three (BEGIN, INSERT, COMMIT), with the same guarantee, since the caller gets
    nothing back unless it succeeded.
    """
    values = {
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
    in_transaction = connection.in_atomic_block
    # In the caller's transaction, a failed INSERT marks the whole of it for rollback.
    with transaction.atomic(savepoint=False) if in_transaction else nullcontext():
        event = _stage(values)
    integrator.schedule_inline_integration()
    return event


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
    tree_size: int = 0
    root_hash: str | None = None
    first_broken_leaf: int | None = None
    staged_events: int = 0

    def as_dict(self) -> dict:
        """The AuditVerify shape of API.md."""
        return asdict(self)


def chain_verify(
    *,
    chunk_size: int = 2000,
    from_leaf: int = 0,
    on_progress: Callable[[int], None] | None = None,
    kept: Sequence[str] = (),
) -> ChainVerification:
    """Recompute the Merkle tree from the events, streaming, and compare it with every stored
    subtree hash and every signed checkpoint; report the first thing that does not hold.

    Leaf i is event i's canonical JSON. A changed or reordered event differs from its stored
    leaf hash (named exactly); a deleted one leaves its leaf index missing; a rewrite that
    recomputed the stored hashes too no longer has a checkpoint's signed root (named as the
    leaves since the checkpoint before it); a checkpoint beyond the last leaf shows a cut tail;
    a checkpoint whose signature no key of the log verifies is named. Events of the hash chain
    written before the tree are checked against that chain and its old checkpoints too.
    `from_leaf` starts there, trusting the stored tree before it. Memory stays constant: rows
    are streamed (server-side cursors on PostgreSQL), the tree's right edge is log2(n) hashes.
    """
    staged = integrator.staged_count()
    legacy = _legacy_chain_verify(chunk_size=chunk_size)
    if legacy is not None:
        return legacy
    size = integrator.tree_size()
    signed: dict[int, bytes] = {}
    for checkpoint in AuditTreeCheckpoint.objects.order_by("tree_size"):
        try:
            _, signed_size, root = signing.note_verify(checkpoint.note)
        except Broken as problem:
            return _broken(
                f"the checkpoint of {checkpoint.tree_size} events: {problem}",
                leaf=checkpoint.tree_size - 1,
                staged=staged,
            )
        if signed_size != checkpoint.tree_size:
            return _broken(
                f"the checkpoint stored for {checkpoint.tree_size} events signs {signed_size}",
                leaf=checkpoint.tree_size - 1,
                staged=staged,
            )
        signed[signed_size] = root
    for note in kept:
        problem = _kept_problem(note, signed, size)
        if problem:
            return _broken(problem[0], leaf=problem[1], staged=staged)
        _, kept_size, root = signing.note_verify(note)
        signed[kept_size] = root  # the tree must have its root at that size, as for the log's
    if not 0 <= from_leaf <= size:
        return _broken(
            f"the tree has {size} leaves: no leaf {from_leaf} to start at", staged=staged
        )
    with transaction.atomic():  # one snapshot, and cursors that stream without WITH HOLD
        return _tree_verify(
            from_leaf=from_leaf,
            size=size,
            signed=signed,
            chunk_size=chunk_size,
            on_progress=on_progress,
            staged=staged,
        )


_STREAMED_COLUMNS = {
    # The leaf's values as plain tuples, the time already as canonical_json writes it.
    "postgresql": (
        "leaf_index, seq, to_char(occurred_at AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\'), actor_id, actor_role, action, object_type, '
        "object_id, subject_ref, clinic_id, purpose, outcome, request_id, host(client_address), "
        "details::text"
    ),
    "sqlite": (
        "leaf_index, seq, occurred_at, actor_id, actor_role, action, object_type, object_id, "
        "subject_ref, clinic_id, purpose, outcome, request_id, client_address, details"
    ),
}


def _sqlite_time(value: datetime | str) -> str:
    """SQLite's stored time (naive UTC; Django's connection parses the declared type) as
    canonical_json writes it."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def _streamed(sql: str, params: list, chunk_size: int) -> Iterator[tuple]:
    """Rows of `sql` as plain tuples, `chunk_size` at a time: a server-side cursor on
    PostgreSQL (closed with the caller's transaction), SQLite's own stepping cursor otherwise.
    Chained in C (no Python frame per row): verification takes two rows per event."""
    cursor = connection.chunked_cursor()
    cursor.execute(sql, params)
    return chain.from_iterable(iter(partial(cursor.fetchmany, chunk_size), []))


def _leaves(from_leaf: int, size: int, chunk_size: int):
    """(leaf index, seq, canonical leaf bytes) of the leaves from_leaf..size-1, in order."""
    rows = _streamed(
        f"SELECT {_STREAMED_COLUMNS[connection.vendor]} FROM {AuditEvent._meta.db_table} "  # noqa: S608
        "WHERE leaf_index >= %s AND leaf_index < %s ORDER BY leaf_index",
        [from_leaf, size],
        chunk_size,
    )
    loads = json.loads
    if connection.vendor == "sqlite":
        for index, seq, occurred_at, *middle, details in rows:
            yield (
                index,
                seq,
                canonical_leaf(seq, _sqlite_time(occurred_at), *middle, loads(details)),
            )
        return
    # json's C scanner without the Python wrapper of `loads` (jsonb's text has no blanks
    # around it): a fifth of a leaf's cost, with the same parser.
    scan = json.JSONDecoder().scan_once
    for row in rows:
        yield row[0], row[1], canonical_leaf(*row[1:14], scan(row[14], 0)[0])


def _tree_verify(*, from_leaf, size, signed, chunk_size, on_progress, staged) -> ChainVerification:
    """Recompute the tree's stored hashes in the order tlog stores them (a leaf's hash, then the
    subtrees it completes), each against the stored one as both stream by, and the root at every
    signed size. Memory: the right edge (log2 n hashes) and one chunk of rows."""
    sha256 = hashlib.sha256
    edge = integrator.builder_at(from_leaf)._edge
    stored_index = tlog.stored_hash_count(from_leaf)
    stored = _streamed(
        f"SELECT id, hash FROM {AuditTreeHash._meta.db_table} "  # noqa: S608
        "WHERE id >= %s AND id < %s ORDER BY id",
        [stored_index, tlog.stored_hash_count(size)],
        chunk_size,
    )
    last_signed = max((n for n in signed if n <= from_leaf), default=0)
    built, checked, head_seq = from_leaf, 0, None
    for index, seq, leaf in _leaves(from_leaf, size, chunk_size):
        if index != built:
            return _broken(
                f"leaf {built} is missing (the next event, #{seq}, is leaf {index})",
                leaf=built,
                checked=checked,
                staged=staged,
            )
        hashed, n = sha256(b"\x00" + leaf).digest(), built
        while True:
            found = next(stored, None)
            if found is None or found[0] != stored_index:
                return _broken(
                    f"the stored tree hash #{stored_index} is missing",
                    leaf=index,
                    seq=seq,
                    checked=checked,
                    staged=staged,
                )
            if found[1] != hashed:  # bytes, or a memoryview that compares as them
                first, last = tlog.leaf_range(stored_index)
                problem = (
                    f"event #{seq} (leaf {index}): its content does not match the tree"
                    if first == last
                    else f"the stored tree hash over leaves {first} to {last} does not match them"
                )
                return _broken(problem, leaf=first, seq=seq, checked=checked, staged=staged)
            stored_index += 1
            if not n & 1:
                break
            hashed, n = sha256(b"\x01" + edge.pop() + hashed).digest(), n >> 1
        edge.append(hashed)
        built += 1
        if built in signed:
            if _edge_root(edge) != signed[built]:
                return _broken(
                    f"leaves {last_signed} to {built - 1} were rewritten: the tree of "
                    f"{built} events does not have its signed root",
                    leaf=last_signed,
                    checked=last_signed - from_leaf if last_signed > from_leaf else 0,
                    staged=staged,
                )
            last_signed = built
        checked, head_seq = checked + 1, seq
        if on_progress and checked % chunk_size == 0:
            on_progress(chunk_size)
    if on_progress and checked % chunk_size:
        on_progress(checked % chunk_size)
    if built != size:
        return _broken(
            f"leaf {built} is missing (the tree has {size} leaves)",
            leaf=built,
            checked=checked,
            staged=staged,
        )
    if signed and max(signed) > size:
        return _broken(
            f"the log ends at {size} leaves but a checkpoint signed {max(signed)}: the tree "
            "shrank, its tail was cut",
            leaf=size,
            checked=checked,
            staged=staged,
        )
    root = _edge_root(edge)
    return ChainVerification(
        ok=True,
        events_checked=checked,
        head_seq=head_seq,
        head_hash=root.hex() if size else None,
        checkpoints_checked=len(signed),
        tree_size=size,
        root_hash=base64.b64encode(root).decode() if size else None,
        staged_events=staged,
    )


def _edge_root(edge: list[bytes]) -> bytes:
    builder = TreeBuilder()
    builder._edge = edge
    return builder.root()


def _kept_problem(note: str, signed: dict[int, bytes], size: int) -> tuple[str, int] | None:
    """(problem, leaf) of a checkpoint an auditor kept, against the log's own: a kept checkpoint
    signed by no key of the log, a fork (the log signed another root for the same size), or a
    tree that shrank below it. None when it can be checked against the tree."""
    try:
        _, kept_size, root = signing.note_verify(note)
    except Broken as problem:
        return f"the kept checkpoint: {problem}", None
    if kept_size in signed and signed[kept_size] != root:
        return (
            f"a fork: the kept checkpoint and the log's checkpoint of {kept_size} events sign "
            "different roots",
            kept_size - 1,
        )
    if kept_size > size:
        return (
            f"the tree shrank: you kept a checkpoint of {kept_size} events, the log has {size} "
            "leaves",
            size,
        )
    return None


def _broken(
    problem: str,
    *,
    leaf: int | None = None,
    seq: int | None = None,
    checked: int = 0,
    staged: int = 0,
) -> ChainVerification:
    if seq is None and leaf is not None:
        seq = AuditEvent.objects.filter(leaf_index=leaf).values_list("seq", flat=True).first()
    return ChainVerification(
        ok=False,
        events_checked=checked,
        head_seq=None,
        head_hash=None,
        first_broken_seq=seq,
        first_broken_leaf=leaf,
        problem=problem,
        staged_events=staged,
    )


def _legacy_chain_verify(*, chunk_size: int) -> ChainVerification | None:
    """The hash chain of the events written before the tree (`hash` set) and its signed
    checkpoints; None when it holds (or there is none)."""
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
            return _broken(
                f"the old chain's checkpoint at #{checkpoint.head_seq} has no valid signature",
                seq=checkpoint.head_seq,
            )
        checkpoints[checkpoint.head_seq] = checkpoint.head_hash
    expected_seq, expected_prev, signed_from = 1, GENESIS_HASH, 1
    rows = AuditEvent.objects.filter(hash__isnull=False).order_by("seq")
    for row in rows.values(*HASHED_FIELDS, "prev_hash", "hash").iterator(chunk_size=chunk_size):
        problem = ""
        if row["seq"] != expected_seq:
            problem = f"sequence number {expected_seq} of the old chain is missing"
        elif row["prev_hash"] != expected_prev:
            problem = "does not chain from the row before it"
        elif chain_hash(row["prev_hash"], row) != row["hash"]:
            problem = "its content does not match its hash"
        elif row["seq"] in checkpoints and checkpoints[row["seq"]] != row["hash"]:
            return _broken(
                f"rows #{signed_from} to #{row['seq']} of the old chain were rewritten: row "
                f"#{row['seq']} does not match its signed checkpoint",
                seq=signed_from,
            )
        if problem:
            return _broken(f"event #{expected_seq}: {problem}", seq=expected_seq)
        if row["seq"] in checkpoints:
            signed_from = row["seq"] + 1
        expected_seq, expected_prev = expected_seq + 1, row["hash"]
    if checkpoints and max(checkpoints) >= expected_seq:
        return _broken(
            f"the old chain ends at #{expected_seq - 1} but a checkpoint signed "
            f"#{max(checkpoints)}: its tail was cut",
            seq=expected_seq,
        )
    return None


def verification_run(
    *,
    actor=None,
    chunk_size: int = 2000,
    from_leaf: int = 0,
    on_progress: Callable[[int], None] | None = None,
    kept: Sequence[str] = (),
) -> ChainVerification:
    """Verify the log and record that it was verified, with the result (A.8.15: logs analysed)."""
    result = chain_verify(
        chunk_size=chunk_size, from_leaf=from_leaf, on_progress=on_progress, kept=kept
    )
    event_append(
        action=AuditAction.AUDIT_VERIFY,
        actor=actor,
        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
        details={
            "from_leaf": from_leaf,
            "events_checked": result.events_checked,
            "checkpoints_checked": result.checkpoints_checked,
            "first_broken_seq": result.first_broken_seq,
            "first_broken_leaf": result.first_broken_leaf,
        },
    )
    return result


# --- Proofs ---------------------------------------------------------------------------------


class ProofUnavailable(DomainError):
    """A proof asked for sizes or an index the signed log does not have."""

    status = 422


def checkpoint_document(checkpoint: AuditTreeCheckpoint) -> dict:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "note": checkpoint.note,
        "created_at": checkpoint.created_at,
        "verifier_keys": signing.note_verifier_keys(),
    }


def checkpoint_latest() -> AuditTreeCheckpoint:
    checkpoint = integrator.latest_checkpoint()
    if checkpoint is None:
        raise NotFound(MESSAGE_NO_CHECKPOINT, "no_checkpoint")
    return checkpoint


def _checkpoint_of_size(size: int, field: str) -> AuditTreeCheckpoint:
    checkpoint = AuditTreeCheckpoint.objects.filter(tree_size=size).first()
    if checkpoint is None:
        raise ProofUnavailable(
            MESSAGE_NO_SUCH_CHECKPOINT.format(size=size, field=field), "no_checkpoint_of_size"
        )
    return checkpoint


def _encoded(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(hashed).decode() for hashed in hashes]


def event_leaf(event: AuditEvent) -> bytes:
    return canonical_json({name: getattr(event, name) for name in HASHED_FIELDS}).encode()


def inclusion_proof_document(*, index: int, tree_size: int) -> dict:
    """The audit path of leaf `index` in the signed tree of `tree_size` leaves, with that
    checkpoint and the leaf's bytes: what `verify_export.py --inclusion` and tlog.CheckRecord
    check."""
    checkpoint = _checkpoint_of_size(tree_size, "tree_size")
    if index >= tree_size:
        raise ProofUnavailable(
            MESSAGE_INDEX_OUTSIDE.format(index=index, size=tree_size), "index_outside_tree"
        )
    event = AuditEvent.objects.get(leaf_index=index)
    return {
        "leaf_index": index,
        "tree_size": tree_size,
        "leaf": event_leaf(event).decode(),
        "proof": _encoded(tlog.inclusion_proof(index, tree_size, read_hashes)),
        "checkpoint": checkpoint.note,
    }


def consistency_proof_document(*, old_size: int, new_size: int) -> dict:
    if old_size > new_size:
        raise ProofUnavailable(MESSAGE_FROM_AFTER_TO, "from_after_to")
    _checkpoint_of_size(old_size, "from")
    checkpoint = _checkpoint_of_size(new_size, "to")
    return {
        "from": old_size,
        "to": new_size,
        "proof": _encoded(tlog.consistency_proof(old_size, new_size, read_hashes)),
        "checkpoint": checkpoint.note,
    }


def patient_event_proof(*, patient_id: int, seq: int) -> dict:
    """The inclusion proof of one event of the patient's access log against the latest
    checkpoint; another patient's event (or none) is not found."""
    event = AuditEvent.objects.filter(seq=seq, subject_ref=subject_pseudonym(patient_id)).first()
    if event is None:
        raise NotFound()
    checkpoint = integrator.latest_checkpoint()
    if event.leaf_index is None or checkpoint is None or event.leaf_index >= checkpoint.tree_size:
        raise ProofUnavailable(MESSAGE_NOT_YET_SIGNED, "not_yet_signed")
    document = inclusion_proof_document(index=event.leaf_index, tree_size=checkpoint.tree_size)
    document["verifier_keys"] = signing.note_verifier_keys()
    return document


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
