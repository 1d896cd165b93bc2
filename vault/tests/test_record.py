"""The medical record: writing entries (encrypted, audited without their text), reading them as
consent.policy decides (every read audited, allowed or denied), and what a page of it costs."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import subject_pseudonym
from audit.signals import audit_event
from consent import policy
from consent.models import CareRelationship, CareSource
from consent.services import care_relationship_record
from patterm.errors import Forbidden, NotFound
from vault import keys
from vault.models import PatientKey, RecordCategory, RecordEntry
from vault.services import (
    emergency_access_declare,
    practitioner_entry_write,
    practitioner_record_read,
    record_entry_create,
    record_read,
)
from vault.tests.factories import record_entry_write, stored_value

pytestmark = pytest.mark.django_db

TITLE_MARKER = "MARKERTITEL4c8e"
BODY_MARKER = "MARKERBEFUND2d7a"


def assert_no_marker_in_audit_log(*markers: str) -> None:
    rows = [str(row) for row in AuditEvent.objects.values()]
    assert rows, "the audit log should not be empty here"
    for row in rows:
        for marker in markers:
            assert marker.lower() not in row.lower(), f"{marker!r} in an audit row: {row}"


# --- Writing --------------------------------------------------------------------------------


def test_an_entry_is_stored_sealed_and_audited_without_its_text(make_patient):
    patient = make_patient().user
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)

    entry = record_entry_create(
        actor=author,
        patient=patient,
        clinic=clinic,
        category=RecordCategory.ALLERGY,
        title=TITLE_MARKER,
        body=BODY_MARKER,
    )

    key_id = PatientKey.objects.get(patient=patient).pk
    for column in ("title", "body"):
        raw = stored_value(RecordEntry, entry.pk, column)
        assert raw.startswith(f"pt1${key_id}$")
        for marker in (TITLE_MARKER, BODY_MARKER):
            assert marker.lower() not in raw.lower()
    stored = RecordEntry.objects.get(pk=entry.pk)
    assert (stored.title, stored.body) == (TITLE_MARKER, BODY_MARKER)
    assert (stored.patient_id, stored.clinic_id, stored.author_id, stored.category) == (
        patient.pk,
        clinic.pk,
        author.pk,
        RecordCategory.ALLERGY,
    )

    event = AuditEvent.objects.get(action=AuditAction.RECORD_WRITE)
    assert (event.actor_id, event.actor_role, event.outcome) == (
        author.pk,
        Role.PRACTITIONER,
        Outcome.SUCCESS,
    )
    assert (event.object_type, event.object_id) == ("record_entry", str(entry.pk))
    assert event.subject_ref == subject_pseudonym(patient.pk)
    assert event.clinic_id == clinic.pk
    assert event.details == {"category": "allergy"}
    assert_no_marker_in_audit_log(TITLE_MARKER, BODY_MARKER)


@pytest.mark.parametrize("writer", ["practitioner_elsewhere", "clinic_admin_here"])
def test_only_a_practitioner_of_the_clinic_may_write_for_it(make_patient, writer):
    patient = make_patient().user
    clinic = ClinicFactory()
    if writer == "practitioner_elsewhere":
        actor = StaffFactory(clinic=ClinicFactory())
    else:
        actor = StaffFactory(clinic=clinic, role=Role.CLINIC_ADMIN)
    events_before = AuditEvent.objects.count()

    with pytest.raises(Forbidden) as raised:
        record_entry_create(
            actor=actor,
            patient=patient,
            clinic=clinic,
            category=RecordCategory.NOTE,
            title=TITLE_MARKER,
            body=BODY_MARKER,
        )

    assert raised.value.code == "not_your_clinic"
    assert RecordEntry.objects.count() == 0
    assert AuditEvent.objects.count() == events_before


# --- Reading: who sees what, and the audit row of every read --------------------------------


@pytest.fixture
def record(make_patient):
    """A patient with 2 entries from clinic A and 3 from clinic B, and everyone around them."""
    patient = make_patient().user
    clinic_a, clinic_b, clinic_c = ClinicFactory(), ClinicFactory(), ClinicFactory()
    author_a, author_b = StaffFactory(clinic=clinic_a), StaffFactory(clinic=clinic_b)
    both = StaffFactory(clinic=clinic_a)
    both.memberships.create(clinic=clinic_b, role=Role.PRACTITIONER)
    written = {clinic_a.pk: [], clinic_b.pk: []}
    for number, (author, clinic) in enumerate(
        [(author_a, clinic_a)] * 2 + [(author_b, clinic_b)] * 3
    ):
        entry = record_entry_write(
            author=author,
            patient=patient,
            clinic=clinic,
            title=f"{TITLE_MARKER}-{number}",
            body=f"{BODY_MARKER}-{number}",
        )
        written[clinic.pk].append(entry.pk)
    readers = {
        "patient": patient,
        "practitioner_a": author_a,
        "practitioner_b": author_b,
        "practitioner_a_and_b": both,
        "practitioner_c": StaffFactory(clinic=clinic_c),
        "clinic_admin_a": StaffFactory(clinic=clinic_a, role=Role.CLINIC_ADMIN),
        "auditor": StaffFactory(role=Role.AUDITOR),
        "other_patient": make_patient().user,
    }
    return patient, readers, {"a": written[clinic_a.pk], "b": written[clinic_b.pk]}


# reader -> (clinics whose entries it sees, basis, audit outcome)
READ_MATRIX = {
    "patient": ("ab", "self", Outcome.SUCCESS),
    "practitioner_a": ("a", "own_clinic", Outcome.SUCCESS),
    "practitioner_b": ("b", "own_clinic", Outcome.SUCCESS),
    "practitioner_a_and_b": ("ab", "own_clinic", Outcome.SUCCESS),
    "practitioner_c": ("", None, Outcome.DENIED),
    "clinic_admin_a": ("", None, Outcome.DENIED),
    "auditor": ("", None, Outcome.DENIED),
    "other_patient": ("", None, Outcome.DENIED),
}


@pytest.mark.parametrize("reader", READ_MATRIX)
def test_each_reader_sees_what_the_policy_allows_and_every_read_is_audited(record, reader):
    patient, readers, written = record
    actor = readers[reader]
    clinics, basis, outcome = READ_MATRIX[reader]
    expected_ids = {pk for clinic in clinics for pk in written[clinic]}
    last_seq = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()

    result = record_read(actor=actor, patient=patient)

    assert {entry.pk for entry in result.entries} == expected_ids
    assert {entry.basis for entry in result.entries} == ({basis} if basis else set())
    assert result.hidden_count == 5 - len(expected_ids)
    for entry in result.entries:  # what may be seen decrypts
        assert entry.title.startswith(TITLE_MARKER) and entry.body.startswith(BODY_MARKER)

    new_events = list(AuditEvent.objects.filter(seq__gt=last_seq))
    assert [event.action for event in new_events] == [AuditAction.RECORD_READ]
    event = new_events[0]
    assert (event.actor_id, event.actor_role) == (actor.pk, actor.role)
    assert event.outcome == outcome
    assert event.details["bases"] == ([basis] if basis else [])
    assert event.subject_ref == subject_pseudonym(patient.pk)
    assert (event.object_type, event.purpose) == ("patient_record", "treatment")
    assert (event.details["entries"], event.details["hidden"]) == (
        len(expected_ids),
        5 - len(expected_ids),
    )
    assert_no_marker_in_audit_log(TITLE_MARKER, BODY_MARKER)


def test_emergency_access_shows_the_whole_record_to_a_practitioner_of_a_caring_clinic(record):
    """A grant of the whole record (emergency) next to a grant of part of it (own clinic): the
    reader sees everything, the own clinic's entries on the stronger basis, nothing hidden."""
    patient, readers, written = record
    doctor = readers["practitioner_a"]
    emergency_access_declare(
        actor=doctor, patient_id=patient.pk, justification="Bewusstlos eingeliefert, keine Akte."
    )

    result = record_read(actor=doctor, patient=patient)

    bases = {entry.pk: entry.basis for entry in result.entries}
    assert bases == {pk: "own_clinic" for pk in written["a"]} | {
        pk: "emergency" for pk in written["b"]
    }
    assert result.hidden_count == 0
    event = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).latest("seq")
    assert event.details == {"bases": ["emergency", "own_clinic"], "entries": 5, "hidden": 0}


def test_an_empty_record_read_by_its_patient_is_a_success(make_patient):
    patient = make_patient().user

    result = record_read(actor=patient, patient=patient)

    assert (result.entries, result.hidden_count) == ([], 0)
    event = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).get()
    assert event.outcome == Outcome.SUCCESS


# --- Cost: one query for the entries and their data key, one unwrap per request -------------


def _patient_with_entries(make_patient, author, clinic, count: int):
    patient = make_patient().user
    with keys.request_key_cache():
        for number in range(count):
            record_entry_write(
                author=author,
                patient=patient,
                clinic=clinic,
                title=f"Titel {number}",
                body=f"Befund {number}",
            )
    return patient


def _read_page(patient) -> tuple[list, list[str]]:
    """Read the record and every title and body, as one request does; returns the queries."""
    with keys.request_key_cache(), CaptureQueriesContext(connection) as queries:
        entries = record_read(actor=patient, patient=patient).entries
        texts = sorted((entry.title, entry.body) for entry in entries)
    return texts, [query["sql"] for query in queries.captured_queries]


def test_decrypting_a_record_page_costs_the_same_queries_for_5_or_50_entries(make_patient):
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    small = _patient_with_entries(make_patient, author, clinic, 5)
    large = _patient_with_entries(make_patient, author, clinic, 50)

    small_texts, small_queries = _read_page(small)
    large_texts, large_queries = _read_page(large)

    assert small_texts == sorted((f"Titel {n}", f"Befund {n}") for n in range(5))
    assert large_texts == sorted((f"Titel {n}", f"Befund {n}") for n in range(50))
    assert len(large_queries) == len(small_queries) <= 10, large_queries
    entry_table, key_table = RecordEntry._meta.db_table, PatientKey._meta.db_table
    for queries in (small_queries, large_queries):
        # One query lists the entries (the other one only counts them) ...
        assert sum(entry_table in sql and "COUNT(" not in sql.upper() for sql in queries) == 1
        # ... and brings the patient's data key with it: no query of the key table of its own.
        assert [sql for sql in queries if key_table in sql] == [
            sql for sql in queries if entry_table in sql and "COUNT(" not in sql.upper()
        ], queries


def test_decrypting_a_record_page_after_reading_it_costs_no_query(make_patient):
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    patient = _patient_with_entries(make_patient, author, clinic, 50)

    with keys.request_key_cache():
        entries = record_read(actor=author, patient=patient).entries
        with CaptureQueriesContext(connection) as queries:
            texts = sorted((entry.title, entry.body) for entry in entries)
    assert queries.captured_queries == []
    assert texts == sorted((f"Titel {n}", f"Befund {n}") for n in range(50))


# --- Round trips of an audited read (decision 0023) -------------------------------------------


def test_a_patient_reads_their_whole_record_in_two_statements(record, django_assert_num_queries):
    """The entries with their data key, and the audit row: no count (nothing can be hidden from
    the patient), no transaction of its own."""
    patient = record[0]
    entry_table, audit_table = RecordEntry._meta.db_table, AuditEvent._meta.db_table

    with keys.request_key_cache(), django_assert_num_queries(2) as queries:
        result = record_read(actor=patient, patient=patient)
        texts = [entry.title for entry in result.entries]

    entries_sql, audit_sql = (query["sql"] for query in queries.captured_queries)
    assert entry_table in entries_sql and "COUNT(" not in entries_sql.upper()
    assert audit_sql.startswith(f"INSERT INTO {audit_table}")
    assert len(texts) == 5 and result.hidden_count == 0
    event = AuditEvent.objects.latest("seq")
    assert (event.outcome, event.details) == (
        Outcome.SUCCESS,
        {"bases": ["self"], "entries": 5, "hidden": 0},
    )


def test_a_practitioner_reads_part_of_a_record_in_four_statements_and_counts_the_rest(
    record, django_assert_num_queries
):
    """Their clinics (the one they act for first, with care and emergency access), the
    consents, the entries with the record's size as a column, the audit row."""
    patient, readers, written = record
    entry_table = RecordEntry._meta.db_table

    doctor = readers["practitioner_a"]
    with keys.request_key_cache(), django_assert_num_queries(4) as queries:
        result = record_read(actor=doctor, patient=patient)

    assert {entry.pk for entry in result.entries} == set(written["a"])
    assert result.hidden_count == 3
    assert [q["sql"].count(entry_table) > 0 for q in queries.captured_queries] == [
        False,
        False,
        True,
        False,
    ]
    event = AuditEvent.objects.latest("seq")
    assert event.details == {"bases": ["own_clinic"], "entries": 2, "hidden": 3}
    assert event.clinic_id == doctor.memberships.get().clinic_id


def test_the_read_names_the_clinic_the_practitioner_acts_for_their_first_by_name(record):
    patient, readers, _ = record
    both = readers["practitioner_a_and_b"]
    first = min((m.clinic for m in both.memberships.all()), key=lambda clinic: clinic.name)

    record_read(actor=both, patient=patient)

    assert AuditEvent.objects.latest("seq").clinic_id == first.pk == policy.acting_clinic_id(both)


def test_a_practitioner_whose_clinic_wrote_nothing_is_refused_the_whole_record(record):
    """In care at a clinic that wrote none of the entries: a grant, but nothing to show; the
    read is denied and every entry counted as hidden."""
    patient, readers, _ = record
    outsider = readers["practitioner_c"]
    care_relationship_record(
        patient=patient, clinic=outsider.memberships.get().clinic, source=CareSource.BOOKING
    )

    result = record_read(actor=outsider, patient=patient)

    assert (result.entries, result.hidden_count, result.granted) == ([], 5, True)
    event = AuditEvent.objects.latest("seq")
    assert (event.outcome, event.details) == (
        Outcome.DENIED,
        {"bases": [], "entries": 0, "hidden": 5},
    )


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_audit_row_of_a_read_commits_by_itself(make_patient):
    """No BEGIN and COMMIT around a read: the audit row is one INSERT in autocommit, committed
    (durably) before the entries are returned; allowed and denied alike."""
    patient = make_patient().user
    stranger = make_patient().user
    staged_in = []

    def note_the_transaction(sender, **event):
        staged_in.append((connection.get_autocommit(), connection.in_atomic_block))

    audit_event.connect(note_the_transaction, dispatch_uid="test.note_the_transaction")
    try:
        record_read(actor=patient, patient=patient)
        record_read(actor=stranger, patient=patient)
    finally:
        audit_event.disconnect(dispatch_uid="test.note_the_transaction")

    assert staged_in == [(True, False), (True, False)]
    reads = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).order_by("seq")
    assert [event.outcome for event in reads] == [Outcome.SUCCESS, Outcome.DENIED]


@pytest.mark.django_db
def test_an_entry_written_under_emergency_access_does_not_outlast_it(make_patient):
    patient = make_patient().user
    clinic = ClinicFactory()
    doctor = StaffFactory(clinic=clinic)
    emergency_access_declare(
        actor=doctor, patient_id=patient.pk, justification="Bewusstlos eingeliefert, keine Akte."
    )

    entry = practitioner_entry_write(
        actor=doctor, patient_id=patient.pk, category="note", title="Notfall", body="Stabil."
    )

    assert entry.basis == "emergency"
    assert not CareRelationship.objects.filter(patient=patient, clinic=clinic).exists()
    with time_machine.travel(timezone.now() + timedelta(hours=5), tick=False):
        with pytest.raises(NotFound):
            practitioner_record_read(actor=doctor, patient_id=patient.pk)
        with pytest.raises(NotFound):
            practitioner_entry_write(
                actor=doctor, patient_id=patient.pk, category="note", title="x", body="y"
            )
