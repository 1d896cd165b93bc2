"""Key rotation: master keys (SECURITY.md E4: killed midway, run again, old key removed) and one
patient's data key (re-encrypt everything, destroy the old key)."""

import base64
import datetime
import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditAction, AuditEvent
from audit.services import chain_verify, subject_pseudonym
from vault import keys
from vault.crypto import DecryptionError
from vault.models import PatientKey, PatientProfile, RecordEntry
from vault.services import MasterKeyRotation, master_key_rotate, patient_erase
from vault.tests.factories import record_entry_write, stored_entry_values, stored_value

pytestmark = pytest.mark.django_db

PROFILE_COLUMNS = ("first_name", "last_name", "date_of_birth")


def _master_key(version: int) -> str:
    return f"{version}:{base64.b64encode(os.urandom(32)).decode()}"


class Killed(Exception):
    """The operator's Ctrl-C, or the OOM killer, between two batches."""


def _plaintexts(patient_id: int) -> tuple:
    """Every value of the patient, decrypted from fresh rows (no key cache in tests)."""
    profile = PatientProfile.objects.get(patient_id=patient_id)
    entries = RecordEntry.objects.filter(patient_id=patient_id).order_by("pk")
    return (
        profile.first_name,
        profile.last_name,
        profile.date_of_birth,
        [(entry.title, entry.body) for entry in entries],
    )


def _key_rows() -> list[tuple]:
    return [
        (pk, version, None if wrapped is None else bytes(wrapped), destroyed_at)
        for pk, version, wrapped, destroyed_at in PatientKey.objects.order_by("pk").values_list(
            "pk", "master_key_version", "wrapped_key", "destroyed_at"
        )
    ]


def _live_versions() -> list[int]:
    return list(
        PatientKey.objects.filter(destroyed_at=None)
        .order_by("pk")
        .values_list("master_key_version", flat=True)
    )


def _key_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="key.").order_by("seq"))


# --- Master key rotation (E4) ---------------------------------------------------------------


def test_a_killed_master_key_rotation_resumes_and_then_the_old_key_can_go(settings, make_patient):
    old, new = _master_key(1), _master_key(2)
    settings.PATTERM_MASTER_KEYS = old
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    patients = []
    for number in range(5):
        patient = make_patient(
            first_name=f"Vorname{number}",
            last_name=f"Nachname{number}",
            date_of_birth=datetime.date(1950 + number, 1, 2),
        ).user
        record_entry_write(
            author=author, patient=patient, clinic=clinic, title=f"Titel {number}", body="Befund"
        )
        patients.append(patient.pk)
    erased = make_patient().user
    patient_erase(patient=erased)
    expected = {patient_id: _plaintexts(patient_id) for patient_id in patients}
    assert _live_versions() == [1] * 5

    settings.PATTERM_MASTER_KEYS = f"{new},{old}"

    # Before anything was re-wrapped, version 1 cannot be retired.
    with pytest.raises(CommandError, match="5 data keys are still wrapped under version 1"):
        call_command("retire_master_key", "1")

    # A dry run counts and changes nothing.
    before, events_before = _key_rows(), AuditEvent.objects.count()
    out = StringIO()
    call_command("rotate_master_key", "--dry-run", stdout=out)
    assert "5 data keys to re-wrap under master key version 2 (dry run" in out.getvalue()
    assert (_key_rows(), AuditEvent.objects.count()) == (before, events_before)

    # Killed right after the first batch (of 2) committed.
    def kill(count):
        raise Killed

    with pytest.raises(Killed):
        master_key_rotate(batch_size=2, on_batch=kill)
    assert _live_versions() == [2, 2, 1, 1, 1]
    assert {patient_id: _plaintexts(patient_id) for patient_id in patients} == expected
    # The three keys still on version 1 really need it, the two re-wrapped ones do not.
    settings.PATTERM_MASTER_KEYS = new
    assert [_plaintexts(patient_id) for patient_id in patients[:2]] == [
        expected[patient_id] for patient_id in patients[:2]
    ]
    for patient_id in patients[2:]:
        with pytest.raises(DecryptionError):
            _plaintexts(patient_id)
    settings.PATTERM_MASTER_KEYS = f"{new},{old}"
    with pytest.raises(CommandError, match="3 data keys are still wrapped under version 1"):
        call_command("retire_master_key", "1")

    # Run again: it picks up the rest.
    out = StringIO()
    call_command("rotate_master_key", "--batch-size", "2", stdout=out)
    assert "Re-wrapped 3 data keys under master key version 2." in out.getvalue()
    assert _live_versions() == [2] * 5
    assert {patient_id: _plaintexts(patient_id) for patient_id in patients} == expected
    assert not PatientKey.objects.filter(destroyed_at=None, master_key_version=1).exists()

    # A third run changes nothing, not even the audit log.
    before, events_before = _key_rows(), AuditEvent.objects.count()
    assert master_key_rotate(batch_size=2) == MasterKeyRotation(
        target_version=2, pending=0, rewrapped=0
    )
    assert (_key_rows(), AuditEvent.objects.count()) == (before, events_before)

    # The active version is never retired; version 1 now is.
    with pytest.raises(CommandError, match="version 2 is the active master key"):
        call_command("retire_master_key", "2")
    out = StringIO()
    call_command("retire_master_key", "1", stdout=out)
    assert "No data key uses master key version 1" in out.getvalue()

    # Version 1 leaves the setting: everything still opens, the erased patient stays erased.
    settings.PATTERM_MASTER_KEYS = new
    assert {patient_id: _plaintexts(patient_id) for patient_id in patients} == expected
    erased_key = PatientKey.objects.get(patient=erased)
    assert (erased_key.wrapped_key, erased_key.master_key_version) == (None, 1)

    events = _key_events()
    assert [event.action for event in events] == [
        AuditAction.KEY_ROTATION_START,
        AuditAction.KEY_ROTATION_BATCH,
        AuditAction.KEY_ROTATION_START,
        AuditAction.KEY_ROTATION_BATCH,
        AuditAction.KEY_ROTATION_BATCH,
        AuditAction.KEY_ROTATION_FINISH,
        AuditAction.KEY_MASTER_RETIRE,
    ]
    assert [events[0].details["pending"], events[2].details["pending"]] == [5, 3]
    assert [events[i].details["count"] for i in (1, 3, 4)] == [2, 2, 1]
    assert events[5].details == {"target_version": 2, "rewrapped": 3}
    assert events[6].details == {"version": 1}
    assert chain_verify().ok


def _five_keys_on_version_1(settings, make_patient) -> list:
    old, new = _master_key(1), _master_key(2)
    settings.PATTERM_MASTER_KEYS = old
    patients = [make_patient(first_name=f"Vorname{number}").user for number in range(5)]
    settings.PATTERM_MASTER_KEYS = f"{new},{old}"
    return patients


def test_a_key_erased_between_its_batchs_read_and_its_update_stays_destroyed(
    settings, make_patient
):
    """Decision 0019, fourth round: the next batch is read (without a lock) while this one is
    written, and its UPDATE writes a key only where the row still holds the wrapped key that
    was unwrapped. An erasure in between must win: no destroyed key comes back."""
    patients = _five_keys_on_version_1(settings, make_patient)
    third = PatientKey.objects.get(patient=patients[2])
    erased = []

    def erase_the_third_after_the_first_batch(count):
        # Batch 2 (keys 3 and 4) has been read and re-wrapped by now, not yet written.
        if not erased:
            erased.append(patient_erase(patient=patients[2]))

    result = master_key_rotate(batch_size=2, on_batch=erase_the_third_after_the_first_batch)

    assert erased == [True]
    third.refresh_from_db()
    assert (third.wrapped_key, third.master_key_version) == (None, 1)
    assert third.destroyed_at is not None
    assert result.rewrapped == 4
    assert _live_versions() == [2, 2, 2, 2]
    batches = [e for e in _key_events() if e.action == AuditAction.KEY_ROTATION_BATCH]
    # Keys 3 and 4 rolled back whole with their audit row; key 5, then key 4 in a second pass.
    assert [e.details["count"] for e in batches] == [2, 1, 1]
    fourth = PatientKey.objects.get(patient=patients[3])
    assert batches[-1].details["first_key"] == batches[-1].details["last_key"] == fourth.pk
    settings.PATTERM_MASTER_KEYS = settings.PATTERM_MASTER_KEYS.split(",")[0]
    for patient in patients[:2] + patients[3:]:
        assert PatientProfile.objects.get(patient=patient).first_name.startswith("Vorname")
    with pytest.raises(DecryptionError):
        keys.unwrap(third)
    assert chain_verify().ok


def test_a_key_changed_between_its_batchs_read_and_its_update_is_rewrapped_from_its_new_value(
    settings, make_patient
):
    """Another writer wrapped the key again (new bytes, still version 1) after the batch read
    it: the stale re-wrap is not written over it, and a second pass re-wraps the new bytes."""
    patients = _five_keys_on_version_1(settings, make_patient)
    third = PatientKey.objects.get(patient=patients[2])
    data_key = keys.unwrap(third)
    changed = []

    def wrap_the_third_again(count):
        if not changed:
            _, wrapped = keys.wrap(patient_id=third.patient_id, key=data_key, version=1)
            changed.append(PatientKey.objects.filter(pk=third.pk).update(wrapped_key=wrapped))

    result = master_key_rotate(batch_size=2, on_batch=wrap_the_third_again)

    assert changed == [1]
    assert result.rewrapped == 5
    assert _live_versions() == [2] * 5
    batches = [e for e in _key_events() if e.action == AuditAction.KEY_ROTATION_BATCH]
    # The first pass wrote 2, then the batch of keys 3 and 4 rolled back whole (the third had
    # changed), then 1; the second pass read keys 3 and 4 again.
    assert [e.details["count"] for e in batches] == [2, 1, 2]
    assert batches[-1].details["first_key"] == third.pk
    settings.PATTERM_MASTER_KEYS = settings.PATTERM_MASTER_KEYS.split(",")[0]
    third.refresh_from_db()
    assert keys.unwrap(third) == data_key


def test_a_key_that_does_not_unwrap_stops_the_rotation_after_the_batches_before_it(
    settings, make_patient
):
    """The next batch is re-wrapped inside this batch's transaction; a key of it that does not
    open must not undo this batch: it commits, and the error comes after it."""
    from vault.tests.factories import stored_value_set

    patients = _five_keys_on_version_1(settings, make_patient)
    third = PatientKey.objects.get(patient=patients[2])
    stored_value_set(PatientKey, third.pk, "wrapped_key", os.urandom(60))
    batches = []

    with pytest.raises(DecryptionError, match="authentication failed"):
        master_key_rotate(batch_size=2, on_batch=batches.append)

    assert batches == [2]
    assert _live_versions() == [2, 2, 1, 1, 1]
    assert [e.details["count"] for e in _key_events() if e.details.get("count")] == [2]


@pytest.mark.requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_rotation_batches_commit_without_waiting_for_the_disk_and_the_finish_row_waits(
    settings, make_patient
):
    """Decision 0019, fourth round: each batch's own transaction sets `synchronous_commit` off
    for itself (`SET LOCAL`), so the session keeps its own setting, and the finish row's
    commit, which flushes every batch before it, waits for the disk as usual."""
    from django.db import connection, transaction

    _five_keys_on_version_1(settings, make_patient)
    queries = _queries_of(lambda: master_key_rotate(batch_size=2))

    asynchronous = [sql for sql in queries if "synchronous_commit" in sql]
    assert asynchronous == ["SET LOCAL synchronous_commit TO OFF"] * 3
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
    assert _live_versions() == [2] * 5

    # Inside a caller's transaction the batches commit nothing themselves: nothing is set.
    settings.PATTERM_MASTER_KEYS = f"{_master_key(3)},{settings.PATTERM_MASTER_KEYS}"
    with transaction.atomic():
        queries = _queries_of(lambda: master_key_rotate(batch_size=2))
        assert not [sql for sql in queries if "synchronous_commit" in sql]
    assert _live_versions() == [3] * 5


def test_keys_created_during_a_rotation_are_born_on_the_new_version(settings, make_patient):
    old, new = _master_key(1), _master_key(2)
    settings.PATTERM_MASTER_KEYS = old
    first = make_patient(first_name="Ida").user
    settings.PATTERM_MASTER_KEYS = f"{new},{old}"

    second = make_patient(first_name="Jonas").user

    assert PatientKey.objects.get(patient=second).master_key_version == 2
    assert master_key_rotate().rewrapped == 1
    settings.PATTERM_MASTER_KEYS = new
    assert PatientProfile.objects.get(patient=first).first_name == "Ida"
    assert PatientProfile.objects.get(patient=second).first_name == "Jonas"


# --- One patient's data key ------------------------------------------------------------------


def _stored_values(patient) -> dict:
    profile = {
        ("profile", column): stored_value(PatientProfile, patient.pk, column)
        for column in PROFILE_COLUMNS
    }
    return profile | stored_entry_values(patient)


def test_rotating_a_patients_key_reencrypts_their_values_and_destroys_the_old_key(make_patient):
    target = make_patient(first_name="Ida", last_name="Pfeiffer").user
    other = make_patient(first_name="Jonas", last_name="Klein").user
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    for patient in (target, target, other):
        record_entry_write(author=author, patient=patient, clinic=clinic)
    old_key = PatientKey.objects.get(patient=target)
    other_key_before = [row for row in _key_rows() if row[0] != old_key.pk]
    target_stored, other_stored = _stored_values(target), _stored_values(other)
    target_values, other_values = _plaintexts(target.pk), _plaintexts(other.pk)

    out = StringIO()
    call_command("rotate_patient_key", str(target.pk), stdout=out)

    assert f"Patient {target.pk}: 3 rows re-encrypted under a new key." in out.getvalue()
    new_key = PatientKey.objects.get(patient=target, destroyed_at=None)
    assert new_key.pk != old_key.pk
    old_key.refresh_from_db()
    assert old_key.wrapped_key is None and old_key.destroyed_at is not None
    # Every value of the patient was rewritten under the new key, and still reads the same.
    after = _stored_values(target)
    assert after.keys() == target_stored.keys() and len(after) == 3 + 2 * 2
    for place, envelope in after.items():
        assert envelope != target_stored[place], place
        assert envelope.startswith(f"pt1${new_key.pk}$"), place
    assert _plaintexts(target.pk) == target_values
    with keys.request_key_cache():  # and through the per-request cache, too
        assert _plaintexts(target.pk) == target_values
    # The other patient is untouched.
    assert _stored_values(other) == other_stored
    assert _plaintexts(other.pk) == other_values
    assert [row for row in _key_rows() if row[0] not in (old_key.pk, new_key.pk)] == (
        other_key_before
    )

    event = AuditEvent.objects.get(action=AuditAction.KEY_PATIENT_ROTATE)
    assert (event.object_type, event.object_id) == ("patient_key", str(new_key.pk))
    assert event.subject_ref == subject_pseudonym(target.pk)
    assert event.details == {"rows": 3, "old_key": old_key.pk}
    assert chain_verify().ok


def test_rotate_patient_key_refuses_unknown_and_erased_patients(make_patient):
    erased = make_patient().user
    patient_erase(patient=erased)
    staff = StaffFactory()

    with pytest.raises(CommandError, match="No patient with id 987654"):
        call_command("rotate_patient_key", "987654")
    with pytest.raises(CommandError, match=f"No patient with id {staff.pk}"):
        call_command("rotate_patient_key", str(staff.pk))
    with pytest.raises(CommandError, match="no live data key"):
        call_command("rotate_patient_key", str(erased.pk))
    assert not AuditEvent.objects.filter(action=AuditAction.KEY_PATIENT_ROTATE).exists()


@pytest.mark.django_db
def test_retiring_a_version_that_was_never_configured_is_refused():
    with pytest.raises(CommandError, match="not in PATTERM_MASTER_KEYS"):
        call_command("retire_master_key", "7")


# --- Cost: one UPDATE per batch, whatever its size --------------------------------------------


def _queries_of(action) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        action()
    return [query["sql"] for query in queries.captured_queries]


def _key_updates(queries: list[str]) -> list[str]:
    table = PatientKey._meta.db_table
    return [sql for sql in queries if sql.upper().startswith("UPDATE") and table in sql]


def test_a_rotation_batch_costs_the_same_queries_for_2_or_6_keys(settings, make_patient):
    old, new = _master_key(1), _master_key(2)
    runs = []
    for count in (2, 6):
        settings.PATTERM_MASTER_KEYS = old
        for _ in range(count):
            make_patient()
        settings.PATTERM_MASTER_KEYS = f"{new},{old}"
        runs.append(_queries_of(lambda count=count: master_key_rotate(batch_size=count)))

    small, large = runs
    # Count, start row, the first batch's read, the batch (the next batch's read, one UPDATE,
    # its audit row), finish row: the same statements for 2 keys as for 6.
    assert len(small) == len(large), (small, large)
    assert len(_key_updates(small)) == len(_key_updates(large)) == 1
    assert _live_versions() == [2] * 8
    settings.PATTERM_MASTER_KEYS = new
    for key in PatientKey.objects.all():
        assert len(keys.unwrap(key)) == 32


@pytest.mark.requires_postgresql
def test_a_rotation_batch_sends_its_keys_as_parameters_not_in_the_statement(settings, make_patient):
    """The batch's UPDATE is bound (decision 0019): the statement PostgreSQL parses is the same
    text for 2 keys as for 6, and no wrapped key is quoted into it."""
    old, new = _master_key(1), _master_key(2)
    statements = []
    for count in (2, 6):
        settings.PATTERM_MASTER_KEYS = old
        for _ in range(count):
            make_patient()
        settings.PATTERM_MASTER_KEYS = f"{new},{old}"
        (update,) = _key_updates(
            _queries_of(lambda count=count: master_key_rotate(batch_size=count))
        )
        statements.append(update)
    assert statements[0] == statements[1]
    assert "\\x" not in statements[0]
    assert "$1" in statements[0]
    assert _live_versions() == [2] * 8


@pytest.mark.requires_postgresql
def test_rewrapping_keys_is_a_hot_update_that_adds_no_index_entry(settings, make_patient):
    """Decision 0019: no index covers the columns a re-wrap changes, and the table's pages keep
    room for the new row versions, so PostgreSQL writes them beside the old ones (HOT)."""
    from django.db import connection

    old, new = _master_key(1), _master_key(2)
    settings.PATTERM_MASTER_KEYS = old
    for _ in range(5):
        make_patient()
    settings.PATTERM_MASTER_KEYS = f"{new},{old}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
            [PatientKey._meta.db_table],
        )
        assert cursor.fetchone()[0] == ["fillfactor=50"]

        def updated_and_hot() -> tuple[int, int]:
            # The backend's counters not yet reported (the test runs in one transaction, so
            # none are reported in between): updates of the table, and of them HOT.
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), "
                "pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
                [PatientKey._meta.db_table] * 2,
            )
            return cursor.fetchone()

        before = updated_and_hot()
        master_key_rotate(batch_size=2)
        after = updated_and_hot()
        assert (after[0] - before[0], after[1] - before[1]) == (5, 5)
    assert _live_versions() == [2] * 5


def test_rotating_a_patients_key_costs_the_same_queries_for_2_or_20_entries(make_patient):
    from vault.services import patient_key_rotate

    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    few, many = make_patient().user, make_patient().user
    for patient, count in ((few, 2), (many, 20)):
        for number in range(count):
            record_entry_write(author=author, patient=patient, clinic=clinic, title=f"T{number}")
    expected = _plaintexts(many.pk)

    few_queries = _queries_of(lambda: patient_key_rotate(patient=few))
    many_queries = _queries_of(lambda: patient_key_rotate(patient=many))

    assert len(many_queries) == len(few_queries), many_queries
    entry_table = RecordEntry._meta.db_table
    entry_updates = [q for q in many_queries if q.upper().startswith("UPDATE") and entry_table in q]
    assert len(entry_updates) == 1
    assert _plaintexts(many.pk) == expected


def test_a_value_whose_key_was_destroyed_before_stays_as_it_is(make_patient):
    """Rotating again leaves a value that already reads as erased untouched (it is not turned
    into the text "[erased]" under the new key)."""
    from vault.fields import ERASED
    from vault.services import patient_key_rotate
    from vault.tests.factories import stored_value_set

    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    patient = make_patient().user
    entry = record_entry_write(author=author, patient=patient, clinic=clinic, title="Alt")
    under_old_key = stored_value(RecordEntry, entry.pk, "title")
    patient_key_rotate(patient=patient)
    stored_value_set(RecordEntry, entry.pk, "title", under_old_key)  # restored from a backup
    assert RecordEntry.objects.get(pk=entry.pk).title is ERASED

    patient_key_rotate(patient=patient)

    assert stored_value(RecordEntry, entry.pk, "title") == under_old_key
    fresh = RecordEntry.objects.get(pk=entry.pk)
    assert fresh.title is ERASED and fresh.body == "Blutdruck 150/95, Kontrolle in vier Wochen."


@pytest.mark.requires_postgresql
def test_bulk_arrays_packed_by_hand_store_what_psycopg_would(settings, make_patient):
    """vault/bulk.py packs integer, bytea and text columns into PostgreSQL's binary array
    format itself (decision 0019, fourth round); a column with a NULL, or values of mixed
    lengths, must store exactly the same as psycopg's own dumping would."""
    from vault.bulk import rows_update

    settings.PATTERM_MASTER_KEYS = _master_key(1)
    for _ in range(3):
        make_patient()
    first, second, third = PatientKey.objects.order_by("pk").values_list("pk", flat=True)
    cases = [
        [(first, 7, b"\x00" * 60), (second, 8, b"\xff" * 60), (third, 9, b"k" * 60)],  # one length
        [(first, 3, b"ab"), (second, 4, b""), (third, 2**31 - 1, b"abcdef" * 100)],  # mixed
        [(first, 5, None), (second, 6, b"x"), (third, 1, None)],  # NULLs: psycopg dumps them
    ]
    for rows in cases:
        for prepared in (True, False):
            assert (
                rows_update(
                    PatientKey, ["master_key_version", "wrapped_key"], rows, prepared=prepared
                )
                == 3
            )
            stored = [
                (pk, version, None if wrapped is None else bytes(wrapped))
                for pk, version, wrapped in PatientKey.objects.order_by("pk").values_list(
                    "pk", "master_key_version", "wrapped_key"
                )
            ]
            assert stored == rows
