"""A1-A3 with the tree: verification recomputes the Merkle tree from the events and names what
was edited, deleted, reordered, inserted, cut or rewritten; no false alarm on an intact log.
Tampering needs the triggers dropped (inside the test's transaction, as `triggers_dropped`)."""

import importlib
from io import StringIO
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from audit import signing, triggers
from audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_json, chain_hash
from audit.integrator import checkpoint_create, integrate_pending, tree_root
from audit.models import AuditCheckpoint, AuditEvent, AuditTreeCheckpoint, AuditTreeHash
from audit.services import chain_verify
from audit.tests.builders import new_signing_key
from audit.tests.helpers import append_varied
from audit.verify_export import TreeBuilder

pytestmark = pytest.mark.django_db


@pytest.fixture
def all_triggers_dropped(db):
    triggers.drop_all(connection)
    yield
    triggers.install_all(connection)


def rebuild_stored_tree() -> None:
    """What a forger who controls the database does after changing events: recompute every
    stored tree hash so that the tree agrees with the changed leaves again."""
    AuditTreeHash.objects.all().delete()
    builder, stored = TreeBuilder(), []
    rows = AuditEvent.objects.exclude(leaf_index=None).order_by("leaf_index")
    for values in rows.values_list(*HASHED_FIELDS):
        stored += builder.append(
            canonical_json(dict(zip(HASHED_FIELDS, values, strict=False))).encode()
        )
    AuditTreeHash.objects.bulk_create(
        AuditTreeHash(id=index, hash=hashed) for index, hashed in enumerate(stored)
    )


def edit(leaf: int, **changes):
    AuditEvent.objects.filter(leaf_index=leaf).update(**changes)


def swap(first: int, second: int):
    AuditEvent.objects.filter(leaf_index=first).update(leaf_index=10**9)
    AuditEvent.objects.filter(leaf_index=second).update(leaf_index=first)
    AuditEvent.objects.filter(leaf_index=10**9).update(leaf_index=second)


TAMPERINGS = {
    "edit_details": (lambda: edit(57, details={"forged": True}), 57, "does not match the tree"),
    "edit_action": (lambda: edit(0, action="auth.logout"), 0, "does not match the tree"),
    "edit_time_by_one_microsecond": (
        lambda: edit(
            150,
            occurred_at=AuditEvent.objects.get(leaf_index=150).occurred_at.replace(
                microsecond=(AuditEvent.objects.get(leaf_index=150).occurred_at.microsecond + 1)
                % 1_000_000
            ),
        ),
        150,
        "does not match the tree",
    ),
    "edit_client_address": (lambda: edit(61, client_address="203.0.113.9"), 61, "the tree"),
    "edit_subject": (lambda: edit(77, subject_ref="0" * 32), 77, "does not match the tree"),
    "edit_seq": (
        lambda: AuditEvent.objects.filter(leaf_index=30).update(seq=10_000),
        30,
        "the tree",
    ),
    "delete_row": (lambda: AuditEvent.objects.filter(leaf_index=100).delete(), 100, "missing"),
    "delete_first_row": (lambda: AuditEvent.objects.filter(leaf_index=0).delete(), 0, "missing"),
    "delete_run_of_rows": (
        lambda: AuditEvent.objects.filter(leaf_index__range=(180, 185)).delete(),
        180,
        "missing",
    ),
    "swap_adjacent_rows": (lambda: swap(40, 41), 40, "does not match the tree"),
    "swap_distant_rows": (lambda: swap(10, 190), 10, "does not match the tree"),
    "edit_stored_leaf_hash": (
        lambda: AuditTreeHash.objects.filter(id=8).update(hash=bytes(32)),
        5,
        "the tree",
    ),
    "edit_stored_node_hash": (
        lambda: AuditTreeHash.objects.filter(id=6).update(hash=bytes(32)),
        0,
        "leaves 0 to 3",
    ),
    "delete_stored_hash": (lambda: AuditTreeHash.objects.filter(id=300).delete(), None, "#300"),
}


@pytest.mark.parametrize("chunk_size", [2000, 7])  # one fetch of rows, or many
@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_a1_tampering_is_detected_and_the_first_broken_leaf_named(
    build_chain, all_triggers_dropped, name, chunk_size
):
    build_chain(200)
    tamper, leaf, problem = TAMPERINGS[name]
    with transaction.atomic():
        tamper()

    result = chain_verify(chunk_size=chunk_size)

    assert not result.ok
    assert problem in result.problem
    if leaf is not None:
        assert result.first_broken_leaf == leaf, result.problem
        # Verified before it: the leaves before the broken one (a node is found at its last).
        assert result.events_checked == (3 if name == "edit_stored_node_hash" else leaf)


def test_a1_an_inserted_row_is_found(build_chain, all_triggers_dropped):
    build_chain(20)
    forged = AuditEvent.objects.get(leaf_index=5)
    forged.seq, forged.leaf_index = None, 20
    forged.save(force_insert=True)

    result = chain_verify()

    assert not result.ok
    assert result.first_broken_leaf == 20
    assert "stored tree hash" in result.problem


def test_a1_no_false_alarm_on_an_intact_log_staged_events_counted(build_chain):
    build_chain(200)
    append_varied(201)  # staged, not yet a leaf

    result = chain_verify()

    assert (result.ok, result.events_checked, result.tree_size) == (True, 200, 200)
    assert result.staged_events == 1
    assert result.checkpoints_checked == 1
    assert result.root_hash == AuditTreeCheckpoint.objects.get().root_hash


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_a2_a_cut_tail_after_a_checkpoint_is_found(build_chain, all_triggers_dropped, cut):
    build_chain(50)
    checkpoint_create()
    with transaction.atomic():
        AuditEvent.objects.filter(leaf_index__gte=50 - cut).delete()

    result = chain_verify()

    assert not result.ok
    assert "tail was cut" in result.problem
    assert result.first_broken_leaf == 50 - cut


@override_settings(PATTERM_AUDIT_CHECKPOINT_EVERY=50)
@pytest.mark.parametrize(("rewritten", "signed_from"), [(120, 100), (0, 0), (199, 150)])
def test_a3_a_rewrite_with_the_tree_recomputed_fails_at_the_next_checkpoint(
    all_triggers_dropped, rewritten, signed_from
):
    for index in range(1, 201):
        append_varied(index)
        if index % 10 == 0:
            integrate_pending()
    assert list(AuditTreeCheckpoint.objects.values_list("tree_size", flat=True)) == [
        10,
        50,
        100,
        150,
        200,
    ]
    with transaction.atomic():
        edit(rewritten, details={"rewritten": True})
        rebuild_stored_tree()

    result = chain_verify()

    assert not result.ok
    assert f"leaves {signed_from} to" in result.problem
    assert "signed root" in result.problem
    assert result.first_broken_leaf == signed_from


def test_a_checkpoint_whose_note_was_changed_is_named(build_chain, all_triggers_dropped):
    build_chain(10)
    checkpoint = AuditTreeCheckpoint.objects.get()
    AuditTreeCheckpoint.objects.filter(pk=checkpoint.pk).update(
        note=checkpoint.note.replace("\n10\n", "\n11\n")
    )

    result = chain_verify()

    assert not result.ok
    assert result.problem.startswith("the checkpoint of 10 events: the signature")


def test_a_checkpoint_signed_by_an_unknown_key_is_named(build_chain, all_triggers_dropped):
    build_chain(10)
    private, _ = new_signing_key()
    with override_settings(PATTERM_AUDIT_SIGNING_KEY=private):
        note = signing.checkpoint_note(tree_size=10, root_hash=bytes(32))
    AuditTreeCheckpoint.objects.update(note=note)

    result = chain_verify()

    assert not result.ok
    assert "signed by no known key" in result.problem


def test_a_retired_key_s_checkpoints_keep_verifying(build_chain):
    old_private, old_public = new_signing_key()
    with override_settings(PATTERM_AUDIT_SIGNING_KEY=old_private):
        build_chain(10)
    new_private, _ = new_signing_key()
    with override_settings(PATTERM_AUDIT_SIGNING_KEY=new_private):
        build_chain(5)
        checkpoint_create()
        assert not chain_verify().ok  # the old key is not listed: its checkpoint is unknown
        with override_settings(PATTERM_AUDIT_VERIFY_KEYS=[old_public]):
            result = chain_verify()
    assert (result.ok, result.checkpoints_checked) == (True, 2)
    assert len(set(AuditTreeCheckpoint.objects.values_list("key_hash", flat=True))) == 2


def test_verify_from_a_leaf_checks_the_rest(build_chain, all_triggers_dropped):
    build_chain(40)
    assert chain_verify(from_leaf=25).events_checked == 15
    edit(30, outcome="denied")
    assert chain_verify(from_leaf=25).first_broken_leaf == 30
    assert chain_verify(from_leaf=41).problem.startswith("the tree has 40 leaves")


def test_the_command_prints_the_tree_and_exits_1_naming_the_break(
    build_chain, all_triggers_dropped
):
    build_chain(12)
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert "intact: 12 events, 1 signed checkpoints, tree of 12 leaves" in out.getvalue()

    edit(4, outcome="denied")
    with pytest.raises(CommandError, match=r"broken at leaf 4 \(event #\d+\)"):
        call_command("verify_audit", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(SystemExit) as exited:
        call_command("verify_audit", "--json", stdout=StringIO(), stderr=StringIO())
    assert exited.value.code == 1


@pytest.mark.django_db(transaction=True)
def test_a_verification_in_its_own_transaction_finds_the_break_and_the_connection_goes_on(
    build_chain,
):
    """Outside any caller's transaction (as `verify_audit` runs: committed rows, its own
    transaction for the streaming cursors), fetching 7 rows at a time: a break in a middle
    fetch is named, and the connection goes on working after the cursors were left."""
    build_chain(30)
    assert not connection.in_atomic_block
    result = chain_verify(chunk_size=7)
    assert (result.ok, result.events_checked, result.checkpoints_checked) == (True, 30, 1)

    triggers.drop(connection)
    try:
        edit(16, outcome="denied")
    finally:
        triggers.install(connection)
    with pytest.raises(
        CommandError, match=r"broken at leaf 16 \(event #\d+\): event #\d+ \(leaf 16\)"
    ):
        call_command("verify_audit", "--chunk-size", "7", stdout=StringIO(), stderr=StringIO())
    broken = chain_verify(chunk_size=7)
    assert (broken.ok, broken.first_broken_leaf, broken.events_checked) == (False, 16, 16)
    assert AuditEvent.objects.count() == 30 + 1  # and the command recorded its run


def _kept_note(case: str) -> str:
    if case == "unknown_key":
        private, _ = new_signing_key()
        with override_settings(PATTERM_AUDIT_SIGNING_KEY=private):
            return signing.checkpoint_note(tree_size=10, root_hash=tree_root(10))
    size, root = {
        "intact": (10, None),
        "intact_between_checkpoints": (5, None),
        "fork": (10, bytes(32)),
        "rewritten_before_it": (5, bytes(32)),
        "shrunk": (40, bytes(32)),
    }[case]
    return signing.checkpoint_note(tree_size=size, root_hash=root or tree_root(size))


KEPT = {
    "intact": None,
    "intact_between_checkpoints": None,
    "fork": "a fork: the kept checkpoint and the log's checkpoint of 10 events sign different",
    "rewritten_before_it": "leaves 0 to 4 were rewritten: the tree of 5 events",
    "shrunk": "the tree shrank: you kept a checkpoint of 40 events, the log has 12 leaves",
    "unknown_key": "the kept checkpoint: the checkpoint is signed by no known key (only by unknown",
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_verify_audit_checks_a_kept_checkpoint_and_names_a_fork_or_a_shrunk_tree(
    build_chain, tmp_path, case
):
    build_chain(10)
    checkpoint_create()
    build_chain(2)
    integrate_pending()
    kept = tmp_path / "kept.txt"
    kept.write_text(_kept_note(case), encoding="utf-8")
    out = StringIO()

    if KEPT[case] is None:
        call_command("verify_audit", "--kept", str(kept), stdout=out, stderr=StringIO())
        assert "intact: 12 events" in out.getvalue()
        return
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit", "--kept", str(kept), stdout=out, stderr=StringIO())
    assert KEPT[case] in str(broken.value)


def test_verify_audit_refuses_a_kept_file_it_cannot_read(build_chain, tmp_path):
    build_chain(3)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("verify_audit", "--kept", str(tmp_path / "binary.txt"), stdout=StringIO())
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("verify_audit", "--kept", str(tmp_path / "missing.txt"), stdout=StringIO())


# --- The hash chain written before the tree ---------------------------------------------------


def legacy_chain(count: int, signed_at: tuple[int, ...]) -> None:
    """Rows as the chain wrote them before migration 0006 (seq 1.., prev_hash, hash, no leaf),
    with checkpoints of the old format, then the migration's step that makes them leaves."""
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        row = {
            "seq": seq,
            "occurred_at": timezone.now(),
            "actor_id": seq,
            "actor_role": "patient",
            "action": "auth.login",
            "object_type": "",
            "object_id": "",
            "subject_ref": "",
            "clinic_id": None,
            "purpose": "",
            "outcome": "success",
            "request_id": "",
            "client_address": "192.0.2.1",
            "details": {"n": seq},
        }
        digest = chain_hash(prev, row)
        AuditEvent.objects.create(**row, prev_hash=prev, hash=digest)
        if seq in signed_at:
            created_at = timezone.now()
            key, signature = signing.sign(
                signing.checkpoint_message(head_seq=seq, head_hash=digest, created_at=created_at)
            )
            AuditCheckpoint.objects.create(
                head_seq=seq,
                head_hash=digest,
                created_at=created_at,
                key_id=key,
                signature=signature,
            )
        prev = digest
    migration = importlib.import_module("audit.migrations.0006_transparency_log_from_chain")
    migration.chain_to_leaves(apps, SimpleNamespace(connection=connection))


def test_the_old_chain_becomes_the_first_leaves_and_its_checkpoints_still_verify(
    all_triggers_dropped,
):
    legacy_chain(20, signed_at=(10, 20))
    triggers.install_all(connection)
    for index in range(5):
        append_varied(index)
    integrate_pending()

    result = chain_verify()

    assert result.ok, result.problem
    assert (result.events_checked, result.tree_size) == (25, 25)
    assert list(AuditEvent.objects.values_list("leaf_index", flat=True)) == list(range(25))
    triggers.drop_all(connection)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda: edit(4, outcome="denied"), "event #5: its content does not match its hash"),
        (
            lambda: AuditCheckpoint.objects.filter(head_seq=20).update(head_hash="0" * 64),
            "checkpoint at #20 has no valid signature",
        ),
        (lambda: AuditEvent.objects.filter(seq__gt=15).delete(), "its tail was cut"),
    ],
)
def test_the_old_chain_s_tampering_is_still_found(all_triggers_dropped, tamper, problem):
    legacy_chain(20, signed_at=(10, 20))
    tamper()

    result = chain_verify()

    assert not result.ok
    assert problem in result.problem
