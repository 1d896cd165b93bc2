"""Signed checkpoints (SECURITY.md A2, A3): a cut tail and a rewrite that recomputes every later
hash are found through the signatures; checkpoints signed automatically and by command;
retired keys; the checkpoints table is append-only; `verify_audit --json` and `--from-seq`."""

import base64
import datetime
import json
from io import StringIO

import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit import services, signing
from audit.models import AuditAction, AuditCheckpoint, AuditEvent, Outcome
from audit.services import chain_verify, checkpoint_create, event_append
from audit.tests.builders import (
    checkpoint_triggers_drop,
    checkpoint_triggers_install,
    new_signing_key,
    plain_chain_holds,
    rewrite_from,
)
from audit.tests.helpers import append_varied

pytestmark = pytest.mark.django_db

VERIFY_KEYS = {
    "ok",
    "events_checked",
    "head_seq",
    "head_hash",
    "first_broken_seq",
    "checkpoints_checked",
}


@pytest.fixture(autouse=True)
def checkpoint_cache_forgotten():
    """The process-wide "last checkpoint seen" must not leak between tests (nor time travel)."""
    services._last_checkpoint_seen = None
    yield
    services._last_checkpoint_seen = None


@pytest.fixture
def checkpoint_triggers_dropped(triggers_dropped):
    """Tamper with checkpoint rows too (inside the test's transaction; installed again after)."""
    checkpoint_triggers_drop()
    yield
    checkpoint_triggers_install()


def append(n: int, *, start: int = 1) -> None:
    for index in range(start, start + n):
        append_varied(index)


def chain_with_checkpoints(length: int, *signed_at: int) -> None:
    """Append `length` events, signing a checkpoint by command right after each of `signed_at`."""
    done = 0
    for head in [*signed_at, length]:
        append(head - done, start=done + 1)
        done = head
        if head in signed_at:
            assert checkpoint_create().head_seq == head


def verify_command(*args) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def verify_command_json(*args) -> tuple[dict, int]:
    """(printed AuditVerify, exit status) of `verify_audit --json`."""
    out, status = StringIO(), 0
    try:
        call_command("verify_audit", "--json", *args, stdout=out, stderr=StringIO())
    except SystemExit as exit_:
        status = exit_.code
    return json.loads(out.getvalue()), status


def last_event() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


# --- A2: a cut tail ---------------------------------------------------------------------------

LENGTH = 30


@pytest.mark.parametrize("cut", range(1, 11))
def test_a2_rows_deleted_after_the_last_checkpoint_are_detected(triggers_dropped, cut):
    chain_with_checkpoints(LENGTH, 10, LENGTH)
    assert chain_verify().ok
    first_missing = LENGTH - cut + 1

    with transaction.atomic():
        AuditEvent.objects.filter(seq__gte=first_missing).delete()

    assert plain_chain_holds()  # the shortened chain alone looks fine
    result = chain_verify()
    assert not result.ok
    assert result.first_broken_seq == first_missing
    assert "its tail was cut" in result.problem
    assert f"ends at #{first_missing - 1}" in result.problem
    assert (result.events_checked, result.head_seq) == (first_missing - 1, first_missing - 1)
    with pytest.raises(CommandError, match=rf"sequence number {first_missing}\b.*tail was cut"):
        verify_command()


def test_a2_a_cut_reaching_below_an_earlier_checkpoint_names_the_first_missing_row(
    triggers_dropped,
):
    chain_with_checkpoints(LENGTH, 10, 20, LENGTH)

    with transaction.atomic():
        AuditEvent.objects.filter(seq__gte=8).delete()

    result = chain_verify()
    assert (result.ok, result.first_broken_seq) == (False, 8)
    assert "signed #30" in result.problem


def test_a2_every_row_deleted_while_a_checkpoint_remains(triggers_dropped):
    chain_with_checkpoints(5, 5)

    with transaction.atomic():
        AuditEvent.objects.all().delete()

    result = chain_verify()
    assert (result.ok, result.first_broken_seq, result.events_checked) == (False, 1, 0)
    assert "tail was cut" in result.problem


# --- A3: a rewrite with every later hash recomputed ------------------------------------------


@pytest.mark.parametrize(
    ("rewritten", "first_broken"),
    [(1, 1), (5, 1), (10, 1), (11, 11), (15, 11), (20, 11), (21, 21), (30, 21)],
)
def test_a3_a_rewritten_and_rehashed_chain_is_detected_through_the_checkpoint(
    triggers_dropped, rewritten, first_broken
):
    chain_with_checkpoints(35, 10, 20, 30)
    assert chain_verify().checkpoints_checked == 3

    rewrite_from(rewritten, details={"forged": True}, outcome=Outcome.SUCCESS)

    assert plain_chain_holds()  # without the signatures, nothing would show
    result = chain_verify()
    assert not result.ok
    assert result.first_broken_seq == first_broken
    assert "does not match its signed checkpoint" in result.problem
    # Nothing from the row after the previous checkpoint on can be trusted.
    assert result.events_checked == first_broken - 1
    assert result.head_seq == (first_broken - 1 or None)
    if first_broken > 1:
        assert result.head_hash == AuditEvent.objects.get(seq=first_broken - 1).hash
    with pytest.raises(CommandError, match=rf"sequence number {first_broken}\b"):
        verify_command()


def test_a3_with_one_checkpoint_at_the_head_a_rewrite_is_named_from_row_one(triggers_dropped):
    chain_with_checkpoints(12, 12)

    rewrite_from(4, actor_id=None)

    result = chain_verify()
    assert (result.ok, result.first_broken_seq) == (False, 1)


def test_a3_rows_after_the_last_checkpoint_are_only_as_safe_as_the_plain_chain(
    triggers_dropped,
):
    """The documented limit: a rewrite of rows no checkpoint signs yet is not detectable; the
    next checkpoint (every N events, M minutes) closes the window."""
    chain_with_checkpoints(15, 10)

    rewrite_from(12, details={"forged": True})

    assert chain_verify().ok


def _checkpoint_message(checkpoint: AuditCheckpoint) -> bytes:
    return signing.checkpoint_message(
        head_seq=checkpoint.head_seq,
        head_hash=checkpoint.head_hash,
        created_at=checkpoint.created_at,
    )


def alter_signature(checkpoint: AuditCheckpoint) -> dict:
    raw = bytearray(base64.b64decode(checkpoint.signature))
    raw[0] ^= 1
    return {"signature": base64.b64encode(bytes(raw)).decode()}


def garble_signature(checkpoint: AuditCheckpoint) -> dict:
    return {"signature": checkpoint.signature[:-4]}


def alter_head_hash(checkpoint: AuditCheckpoint) -> dict:
    return {"head_hash": "f" * 64}


def alter_time(checkpoint: AuditCheckpoint) -> dict:
    return {"created_at": checkpoint.created_at + datetime.timedelta(microseconds=1)}


def sign_with_another_key(checkpoint: AuditCheckpoint) -> dict:
    other = Ed25519PrivateKey.generate()
    return {
        "key_id": signing.key_id(other.public_key()),
        "signature": base64.b64encode(other.sign(_checkpoint_message(checkpoint))).decode(),
    }


def sign_with_another_key_under_the_current_id(checkpoint: AuditCheckpoint) -> dict:
    other = Ed25519PrivateKey.generate()
    return {"signature": base64.b64encode(other.sign(_checkpoint_message(checkpoint))).decode()}


CHECKPOINT_TAMPERING = [
    alter_signature,
    garble_signature,
    alter_head_hash,
    alter_time,
    sign_with_another_key,
    sign_with_another_key_under_the_current_id,
]


@pytest.mark.parametrize("tamper", CHECKPOINT_TAMPERING, ids=lambda tamper: tamper.__name__)
def test_a3_a_tampered_checkpoint_is_detected(checkpoint_triggers_dropped, tamper):
    chain_with_checkpoints(25, 10, 20)
    checkpoint = AuditCheckpoint.objects.get(head_seq=20)

    with transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(**tamper(checkpoint))

    result = chain_verify()
    assert not result.ok
    assert result.first_broken_seq == 20
    assert result.problem == "the checkpoint at #20 has no valid signature"
    with pytest.raises(CommandError, match=r"sequence number 20\b"):
        verify_command()


def test_a3_a_rewrite_with_a_forged_checkpoint_is_still_detected(checkpoint_triggers_dropped):
    """The forger rewrites the chain and "re-signs" the checkpoint over the new head with a key
    of their own: the checkpoint no longer verifies."""
    chain_with_checkpoints(20, 20)
    rewrite_from(3, details={"forged": True})
    checkpoint = AuditCheckpoint.objects.get(head_seq=20)
    checkpoint.head_hash = last_event().hash

    with transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(
            head_hash=checkpoint.head_hash, **sign_with_another_key(checkpoint)
        )

    result = chain_verify()
    assert (result.ok, result.first_broken_seq) == (False, 20)


def test_a_retired_key_still_verifies_its_checkpoints_after_rotation(settings):
    old_private, old_public = new_signing_key()
    new_private, _ = new_signing_key()
    settings.PATTERM_AUDIT_SIGNING_KEY = old_private
    settings.PATTERM_AUDIT_VERIFY_KEYS = []
    chain_with_checkpoints(10, 10)
    old_id = AuditCheckpoint.objects.get().key_id

    settings.PATTERM_AUDIT_SIGNING_KEY = new_private
    settings.PATTERM_AUDIT_VERIFY_KEYS = [old_public]
    append(5, start=11)
    checkpoint_create()

    new_id = AuditCheckpoint.objects.get(head_seq=15).key_id
    assert new_id != old_id
    result = chain_verify()
    assert (result.ok, result.checkpoints_checked, result.head_seq) == (True, 2, 15)

    # Dropped from the verify keys, the old checkpoint no longer verifies.
    settings.PATTERM_AUDIT_VERIFY_KEYS = []
    result = chain_verify()
    assert (result.ok, result.first_broken_seq) == (False, 10)
    assert "no valid signature" in result.problem


# --- Automatic checkpoints --------------------------------------------------------------------


def test_a_checkpoint_is_signed_every_n_events(settings):
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 10

    append(35)

    checkpoints = list(AuditCheckpoint.objects.order_by("head_seq"))
    assert [checkpoint.head_seq for checkpoint in checkpoints] == [10, 20, 30]
    for checkpoint in checkpoints:
        assert checkpoint.head_hash == AuditEvent.objects.get(seq=checkpoint.head_seq).hash
        assert checkpoint.key_id == signing.key_id(signing.signing_key().public_key())
        assert signing.signature_valid(
            key=checkpoint.key_id,
            signature=checkpoint.signature,
            message=_checkpoint_message(checkpoint),
        )
    result = chain_verify()
    assert (result.ok, result.checkpoints_checked, result.events_checked) == (True, 3, 35)


def test_no_automatic_checkpoint_when_both_settings_are_zero(settings):
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 0
    settings.PATTERM_AUDIT_CHECKPOINT_MINUTES = 0

    append(25)

    assert not AuditCheckpoint.objects.exists()


START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)


def _minutes_schedule(traveller, *, execute_on_commit, capture) -> list[int]:
    """Append one event at minutes 0, 1, 4, 5, 6, 9, 10 and 16; the checkpoints' head_seq."""
    for index, minute in enumerate([0, 1, 4, 5, 6, 9, 10, 16], 1):
        traveller.move_to(START + datetime.timedelta(minutes=minute))
        if execute_on_commit:
            with capture(execute=True):
                append_varied(index)
        else:
            append_varied(index)
    return list(AuditCheckpoint.objects.values_list("head_seq", flat=True))


@pytest.mark.parametrize(
    "execute_on_commit", [False, True], ids=["on-commit-not-run", "on-commit-run"]
)
def test_a_checkpoint_is_signed_at_the_first_event_then_after_m_minutes(
    settings, django_capture_on_commit_callbacks, execute_on_commit
):
    """In a test transaction the on-commit callback that remembers the checkpoint does not run
    unless executed explicitly; the schedule must come out the same either way."""
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 0
    settings.PATTERM_AUDIT_CHECKPOINT_MINUTES = 5

    with time_machine.travel(START, tick=False) as traveller:
        signed = _minutes_schedule(
            traveller,
            execute_on_commit=execute_on_commit,
            capture=django_capture_on_commit_callbacks,
        )

    # Minute 0 (first event), 5 (five after 0), 10 (five after 5), 16 (six after 10).
    assert signed == [1, 4, 7, 8]
    times = list(AuditCheckpoint.objects.values_list("created_at", flat=True))
    assert times == [START + datetime.timedelta(minutes=m) for m in (0, 5, 10, 16)]
    assert chain_verify().ok


def test_a_remembered_checkpoint_spares_the_query_until_m_minutes_passed(
    settings, django_capture_on_commit_callbacks
):
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 0
    settings.PATTERM_AUDIT_CHECKPOINT_MINUTES = 5
    table = AuditCheckpoint._meta.db_table

    with time_machine.travel(START, tick=False) as traveller:
        with django_capture_on_commit_callbacks(execute=True):
            append_varied(1)
        assert services._last_checkpoint_seen == START
        traveller.shift(datetime.timedelta(minutes=3))
        with CaptureQueriesContext(connection) as queries:
            append_varied(2)
        assert not [query for query in queries if table in query["sql"]]
        assert AuditCheckpoint.objects.count() == 1


def test_a_rolled_back_checkpoint_is_not_remembered(settings, django_capture_on_commit_callbacks):
    """A transaction that wrote a checkpoint and then failed leaves no checkpoint behind, and
    must not leave this process believing there is one."""
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 0
    settings.PATTERM_AUDIT_CHECKPOINT_MINUTES = 5

    class Failed(Exception):
        pass

    with time_machine.travel(START, tick=False):
        with pytest.raises(Failed), transaction.atomic():
            append_varied(1)
            append_varied(2)  # sees the checkpoint of its own, uncommitted transaction
            raise Failed
        assert not AuditCheckpoint.objects.exists()

        with django_capture_on_commit_callbacks(execute=True):
            event = append_varied(1)

    assert list(AuditCheckpoint.objects.values_list("head_seq", "head_hash")) == [(1, event.hash)]


# --- manage.py audit_checkpoint -----------------------------------------------------------------


def checkpoint_command() -> str:
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    return out.getvalue()


def test_audit_checkpoint_on_an_empty_chain_says_so_and_signs_nothing():
    assert "empty" in checkpoint_command()
    assert not AuditCheckpoint.objects.exists()


def test_audit_checkpoint_twice_on_the_same_head_writes_one_checkpoint():
    append(7)
    head = last_event()

    first = checkpoint_command()
    second = checkpoint_command()

    assert f"#7 {head.hash}" in first
    assert first == second
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.head_seq, checkpoint.head_hash) == (7, head.hash)
    assert checkpoint.key_id in first

    append(1, start=8)
    assert "#8 " in checkpoint_command()
    assert list(AuditCheckpoint.objects.values_list("head_seq", flat=True)) == [7, 8]
    assert chain_verify().checkpoints_checked == 2


# --- The checkpoints table is append-only ------------------------------------------------------

TABLE = AuditCheckpoint._meta.db_table


def orm_update():
    AuditCheckpoint.objects.update(head_hash="0" * 64)


def orm_save():
    checkpoint = AuditCheckpoint.objects.first()
    checkpoint.signature = "forged"
    checkpoint.save()


def orm_delete():
    AuditCheckpoint.objects.all().delete()


def raw_update():
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET head_seq = head_seq + 100")


def raw_delete():
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")


def raw_replace():
    columns = "id, head_seq, head_hash, created_at, key_id, signature"
    select = f"SELECT {columns} FROM {TABLE} WHERE head_seq = 5"
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"INSERT OR REPLACE INTO {TABLE} ({columns}) {select}")
        else:
            cursor.execute(
                f"INSERT INTO {TABLE} ({columns}) {select} "
                "ON CONFLICT (id) DO UPDATE SET signature = 'forged'"
            )


@pytest.mark.parametrize(
    "attempt",
    [orm_update, orm_save, orm_delete, raw_update, raw_delete, raw_replace],
    ids=lambda attempt: attempt.__name__,
)
def test_checkpoints_cannot_be_changed_or_removed(attempt):
    chain_with_checkpoints(10, 5, 10)
    before = list(AuditCheckpoint.objects.values())

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        attempt()

    assert list(AuditCheckpoint.objects.values()) == before
    assert chain_verify().ok


@pytest.mark.requires_postgresql
def test_checkpoints_cannot_be_truncated():
    chain_with_checkpoints(5, 5)

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"TRUNCATE {TABLE}")

    assert AuditCheckpoint.objects.count() == 1


# --- manage.py verify_audit: --json, --from-seq, audited runs ----------------------------------


def test_verify_audit_json_prints_the_audit_verify_shape():
    chain_with_checkpoints(12, 10)
    head = last_event()

    printed, status = verify_command_json()

    assert status == 0
    assert set(printed) >= VERIFY_KEYS
    assert printed["ok"] is True
    assert (printed["events_checked"], printed["head_seq"], printed["head_hash"]) == (
        12,
        12,
        head.hash,
    )
    assert (printed["first_broken_seq"], printed["checkpoints_checked"]) == (None, 1)


def test_verify_audit_json_exits_1_on_a_broken_chain(triggers_dropped):
    append(12)
    with transaction.atomic():
        AuditEvent.objects.filter(seq=6).update(details={"forged": True})

    printed, status = verify_command_json()

    assert status == 1
    assert (printed["ok"], printed["first_broken_seq"], printed["events_checked"]) == (
        False,
        6,
        5,
    )


@pytest.mark.parametrize("from_seq", [1, 2, 17, 30])
def test_verify_from_a_sequence_number_checks_the_rest(from_seq):
    append(30)

    printed, status = verify_command_json("--from-seq", str(from_seq))

    assert status == 0
    assert printed["events_checked"] == 30 - from_seq + 1
    assert printed["head_seq"] == 30
    assert chain_verify(from_seq=from_seq).events_checked == 31 - from_seq + 1  # + the run


@pytest.mark.parametrize(
    ("from_seq", "rewritten", "first_broken"),
    [(15, 17, 15), (15, 25, 21), (12, 12, 12), (25, 28, 25)],
)
def test_verify_from_a_sequence_number_still_finds_a_rewrite_after_it(
    triggers_dropped, from_seq, rewritten, first_broken
):
    chain_with_checkpoints(35, 10, 20, 30)
    rewrite_from(rewritten, details={"forged": True})

    printed, status = verify_command_json("--from-seq", str(from_seq))

    assert (status, printed["ok"], printed["first_broken_seq"]) == (1, False, first_broken)


def test_verify_from_a_sequence_number_finds_an_edit_and_a_cut_after_it(triggers_dropped):
    chain_with_checkpoints(30, 30)
    with transaction.atomic():
        AuditEvent.objects.filter(seq=22).update(outcome=Outcome.DENIED)

    printed, status = verify_command_json("--from-seq", "20")
    assert (status, printed["first_broken_seq"], printed["events_checked"]) == (1, 22, 2)

    with transaction.atomic():
        AuditEvent.objects.filter(seq__gte=21).delete()
    result = chain_verify(from_seq=20)
    assert (result.ok, result.first_broken_seq) == (False, 21)
    assert "tail was cut" in result.problem


def test_each_verification_run_is_audited(triggers_dropped):
    append(8)

    verify_command()
    verify_command_json("--from-seq", "3")
    ok_runs = list(AuditEvent.objects.filter(action=AuditAction.AUDIT_VERIFY).order_by("seq"))
    assert [(event.seq, event.outcome) for event in ok_runs] == [
        (9, Outcome.SUCCESS),
        (10, Outcome.SUCCESS),
    ]
    assert ok_runs[0].details == {
        "from_seq": 1,
        "events_checked": 8,
        "checkpoints_checked": 0,
        "first_broken_seq": None,
    }
    assert ok_runs[1].details["from_seq"] == 3
    assert ok_runs[1].details["events_checked"] == 7
    assert (ok_runs[0].actor_id, ok_runs[0].request_id, ok_runs[0].client_address) == (
        None,
        "",
        None,
    )

    with transaction.atomic():
        AuditEvent.objects.filter(seq=4).update(details={"forged": True})
    with pytest.raises(CommandError):
        verify_command()

    failed = last_event()
    assert (failed.seq, failed.action, failed.outcome) == (11, "audit.verify", "failure")
    assert failed.details["first_broken_seq"] == 4
    assert failed.details["events_checked"] == 3


def test_verify_refuses_a_from_seq_below_one():
    with pytest.raises(CommandError, match="at least 1"):
        verify_command("--from-seq", "0")
    assert not AuditEvent.objects.exists()


def test_an_audited_event_chains_after_a_verification():
    append(3)
    verify_command()

    event_append(action=AuditAction.AUTH_LOGIN, outcome=Outcome.SUCCESS)

    assert chain_verify().events_checked == 5


def test_ids_given_as_numbers_hash_as_they_are_stored():
    """The Django admin's log entries carry integer object ids; the columns store text."""
    event_append(action=AuditAction.ADMIN_CHANGE, outcome=Outcome.SUCCESS, object_id=5, purpose="")
    event_append(action=AuditAction.ADMIN_CHANGE, outcome=Outcome.SUCCESS, object_id=None)

    assert list(AuditEvent.objects.values_list("object_id", flat=True)) == ["5", ""]
    assert chain_verify().ok
