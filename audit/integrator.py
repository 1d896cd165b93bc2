"""The integrator: staged events become consecutive leaves of the Merkle tree.

Writers only INSERT their event (no lock shared with other writers, the row's `leaf_index`
empty). The integrator, one batch per transaction, reads the staged events that are committed
(uncommitted ones are invisible to it, whatever their `seq`: an event whose transaction commits
after a later-numbered one is simply taken by a later batch, and a rolled-back event never
appears, so its gap in `seq` stalls nothing), gives them the next leaf indices in `seq` order,
stores the tree's new subtree hashes and, when one is due, signs a checkpoint. A crash mid-batch
rolls the whole batch back: nothing is lost, nothing integrated twice.

One batch at a time: on PostgreSQL every batch takes a transaction-scoped advisory lock that only
integrators take (never writers); on SQLite the transaction's BEGIN IMMEDIATE holds the single
write lock. The long-running `audit_integrate` also holds a session lock, so that a second one
started by mistake says so and exits.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import signing, tlog
from audit.chain import HASHED_FIELDS, canonical_json
from audit.models import AuditEvent, AuditTreeCheckpoint, AuditTreeHash
from audit.verify_export import TreeBuilder, leaf_hash

# Fixed 64-bit keys of PostgreSQL advisory locks, taken by integrators only.
BATCH_LOCK_KEY = 0x70617474_65726D02
PROCESS_LOCK_KEY = 0x70617474_65726D03
DEFAULT_BATCH_SIZE = 1000


class TreeDamaged(Exception):
    """A stored hash the tree needs is missing: the tree table was tampered with."""


def read_hashes(indices: Sequence[int]) -> list[bytes]:
    """The stored tree hashes at `indices`, in that order (one query)."""
    found = dict(AuditTreeHash.objects.filter(id__in=list(indices)).values_list("id", "hash"))
    try:
        return [bytes(found[index]) for index in indices]
    except KeyError as missing:
        raise TreeDamaged(f"the stored tree hash #{missing} is missing") from None


def tree_size() -> int:
    """How many events are leaves of the tree (committed integration)."""
    last = AuditEvent.objects.filter(leaf_index__isnull=False).order_by("-leaf_index")
    last = last.values_list("leaf_index", flat=True).first()
    return 0 if last is None else last + 1


def tree_root(size: int) -> bytes:
    return tlog.tree_hash(size, read_hashes)


def _batch_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [BATCH_LOCK_KEY])


def builder_at(size: int) -> TreeBuilder:
    """A TreeBuilder holding the right edge of the stored tree of `size` leaves."""
    builder = TreeBuilder()
    if size:
        builder._edge = read_hashes(tlog.edge_indices(size))
        builder.size = size
    return builder


def integrate_batch(*, limit: int = DEFAULT_BATCH_SIZE) -> list[tuple[int, int]]:
    """Integrate up to `limit` committed staged events; returns their (seq, leaf index)."""
    with transaction.atomic():
        _batch_lock()
        staged = list(
            AuditEvent.objects.filter(leaf_index__isnull=True)
            .order_by("seq")
            .values_list(*HASHED_FIELDS)[:limit]
        )
        if not staged:
            return []
        size = tree_size()
        builder = builder_at(size)
        stored_from = tlog.stored_hash_count(size)
        new_hashes: list[bytes] = []
        assigned = []
        for offset, values in enumerate(staged):
            leaf = canonical_json(dict(zip(HASHED_FIELDS, values, strict=True))).encode()
            new_hashes += builder.append_hash(leaf_hash(leaf))
            assigned.append((values[0], size + offset))
        _tree_hashes_store(stored_from, new_hashes)
        _leaf_indices_set(assigned)
        if _checkpoint_due(builder.size):
            _checkpoint_write(builder.size, builder.root())
    return assigned


def _tree_hashes_store(stored_from: int, hashes: list[bytes]) -> None:
    """The batch's new tree hashes, ids from `stored_from` on. On PostgreSQL one INSERT of two
    arrays: the ORM's bulk_create compiled a parameter per value and was more than half of the
    integrator's time per event (bench/audit.py, decision 0018), on the cores the writers use."""
    if connection.vendor != "postgresql":
        AuditTreeHash.objects.bulk_create(
            AuditTreeHash(id=stored_from + number, hash=hashed)
            for number, hashed in enumerate(hashes)
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AuditTreeHash._meta.db_table} (id, hash)"  # noqa: S608 (constant)
            " SELECT * FROM unnest(%s::bigint[], %s::bytea[])",
            [list(range(stored_from, stored_from + len(hashes))), hashes],
        )


def _leaf_indices_set(assigned: list[tuple[int, int]]) -> None:
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET leaf_index = batch.leaf_index FROM"  # noqa: S608 (constant)
                " unnest(%s::bigint[], %s::bigint[]) AS batch(seq, leaf_index)"
                f" WHERE {table}.seq = batch.seq",
                [[seq for seq, _ in assigned], [index for _, index in assigned]],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET leaf_index = %s WHERE seq = %s",  # noqa: S608 (constant)
                [(index, seq) for seq, index in assigned],
            )


def integrate_pending(*, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Integrate every committed staged event, batch after batch; returns how many."""
    total = 0
    while batch := integrate_batch(limit=batch_size):
        total += len(batch)
        if len(batch) < batch_size:
            break
    return total


def integrate_after_commit() -> None:
    """Inline integration (PATTERM_AUDIT_INTEGRATE_INLINE, SQLite): run once per transaction
    that staged events, right after it committed."""
    integrate_pending()


def schedule_inline_integration() -> None:
    if not settings.PATTERM_AUDIT_INTEGRATE_INLINE:
        return
    if any(entry[1] is integrate_after_commit for entry in connection.run_on_commit):
        return
    # Robust: a failure there must not turn a committed change into an error page; the event
    # stays staged and the next integration takes it. In autocommit (a staged event that was
    # its own transaction) `on_commit` runs it at once.
    transaction.on_commit(integrate_after_commit, robust=True)


# --- Checkpoints ----------------------------------------------------------------------------


def latest_checkpoint() -> AuditTreeCheckpoint | None:
    return AuditTreeCheckpoint.objects.order_by("-tree_size").first()


def _checkpoint_due(size: int, now: datetime | None = None) -> bool:
    latest = latest_checkpoint()
    if latest is None:
        return True
    if size <= latest.tree_size:
        return False
    every = settings.PATTERM_AUDIT_CHECKPOINT_EVERY
    if every and size // every > latest.tree_size // every:
        return True
    interval = settings.PATTERM_AUDIT_CHECKPOINT_MINUTES
    return bool(interval) and (now or timezone.now()) - latest.created_at >= timedelta(
        minutes=interval
    )


def _checkpoint_write(size: int, root: bytes) -> AuditTreeCheckpoint:
    note = signing.checkpoint_note(tree_size=size, root_hash=root)
    key_hash = signing.verify_export.key_hash(
        signing.log_origin(), signing.public_key_bytes(signing.signing_key().public_key())
    )
    return AuditTreeCheckpoint.objects.create(
        tree_size=size,
        root_hash=signing.base64.b64encode(root).decode(),
        note=note,
        key_hash=key_hash.hex(),
        created_at=timezone.now(),
    )


def checkpoint_create() -> AuditTreeCheckpoint | None:
    """Integrate what is committed, then sign the tree's head now (None for an empty log).

    When the head is signed already, that checkpoint is returned and nothing is written.
    """
    integrate_pending()
    with transaction.atomic():
        _batch_lock()
        size = tree_size()
        if size == 0:
            return None
        existing = AuditTreeCheckpoint.objects.filter(tree_size=size).first()
        return existing or _checkpoint_write(size, tree_root(size))


# --- The long-running process ---------------------------------------------------------------


def process_lock_try() -> bool:
    """Take the session lock that marks the one running integrator (PostgreSQL); SQLite's
    single write lock serialises batches already, so two processes there are merely wasteful."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [PROCESS_LOCK_KEY])
        return cursor.fetchone()[0]


def process_lock_wait() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [PROCESS_LOCK_KEY])


def process_lock_release() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [PROCESS_LOCK_KEY])


def staged_count() -> int:
    return AuditEvent.objects.filter(leaf_index__isnull=True).count()
