"""Erasure by crypto-shredding (SECURITY.md E5): the erased patient's values read as erased,
everyone else's are unchanged, the account is closed, and no marker string is left in the
database or the logs."""

import datetime
import json
import logging
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken, User
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditAction, AuditEvent
from audit.services import chain_verify, subject_pseudonym
from vault.fields import ERASED, is_erased
from vault.models import PatientKey, PatientProfile, RecordEntry
from vault.services import patient_erase, patient_is_erased, record_read
from vault.tests.factories import (
    record_entry_write,
    stored_entry_values,
    stored_value,
    stored_value_set,
)

FIRST_NAME_MARKER = "MARKERVORNAME3e9d"
LAST_NAME_MARKER = "MARKERNACHNAME6a2f"
TITLE_MARKER = "MARKERDIAGNOSE8c1b"
BODY_MARKER = "MARKERBEFUND5f7e"
MARKERS = (FIRST_NAME_MARKER, LAST_NAME_MARKER, TITLE_MARKER, BODY_MARKER)
PASSWORD = "Lange-Reise-2026"


def _values(patient_id: int) -> list:
    """Every encrypted value of the patient, read from fresh rows."""
    profile = PatientProfile.objects.get(patient_id=patient_id)
    values = [profile.first_name, profile.last_name, profile.date_of_birth]
    for entry in RecordEntry.objects.filter(patient_id=patient_id).order_by("pk"):
        values += [entry.title, entry.body]
    return values


def _stored(patient) -> dict:
    profile = {
        column: stored_value(PatientProfile, patient.pk, column)
        for column in ("first_name", "last_name", "date_of_birth")
    }
    return profile | stored_entry_values(patient)


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def two_patients(make_patient):
    """(issued token of the patient to erase, the patient who stays, the practitioner)."""
    doomed = make_patient(
        email="ida.pfeiffer@example.com",
        first_name=FIRST_NAME_MARKER,
        last_name=LAST_NAME_MARKER,
        date_of_birth=datetime.date(1937, 4, 21),
    )
    kept = make_patient(first_name="Jonas", last_name="Klein").user
    clinic = ClinicFactory()
    doctor = StaffFactory(clinic=clinic)
    for patient in (doomed.user, doomed.user, kept):
        record_entry_write(
            author=doctor, patient=patient, clinic=clinic, title=TITLE_MARKER, body=BODY_MARKER
        )
    return doomed, kept, doctor


@pytest.mark.django_db
def test_erasing_a_patient_shreds_their_values_and_closes_the_account(api_client, two_patients):
    doomed, kept, doctor = two_patients
    patient = doomed.user
    kept_values, kept_stored = _values(kept.pk), _stored(kept)
    assert kept_values[3:] == [TITLE_MARKER, BODY_MARKER]

    out = StringIO()
    call_command("erase_patient", str(patient.pk), "--yes", stdout=out)

    assert f"Patient {patient.pk} erased." in out.getvalue()
    # Every value reads as ERASED: not an exception, not garbage.
    values = _values(patient.pk)
    assert len(values) == 3 + 2 * 2
    assert values == [ERASED] * len(values)
    assert all(is_erased(value) for value in values)
    # Also through the record a practitioner reads (the policy still lets them list it).
    entries = record_read(actor=doctor, patient=User.objects.get(pk=patient.pk)).entries
    assert [(entry.title, entry.body) for entry in entries] == [(ERASED, ERASED)] * 2
    # The other patient is unchanged, value for value and byte for byte.
    assert _values(kept.pk) == kept_values
    assert _stored(kept) == kept_stored

    user = User.objects.get(pk=patient.pk)
    assert not user.is_active
    assert user.email == f"erased-{patient.pk}@erased.invalid"
    assert not user.has_usable_password()
    assert patient_is_erased(user)
    key = PatientKey.objects.get(patient=user)
    assert key.wrapped_key is None and key.destroyed_at is not None
    assert not ApiToken.objects.filter(user=user, revoked_at=None).exists()

    # Neither the old password nor the old token opens anything.
    login = api_client.post(
        "/api/auth/login",
        data=json.dumps({"email": "ida.pfeiffer@example.com", "password": PASSWORD}),
        content_type="application/json",
    )
    assert login.status_code == 401
    assert api_client.get("/api/me", **bearer(doomed.raw)).status_code == 401
    assert api_client.get("/api/patient/record", **bearer(doomed.raw)).status_code == 401

    event = AuditEvent.objects.get(action=AuditAction.ERASURE_COMPLETE)
    assert (event.object_type, event.object_id) == ("user", str(patient.pk))
    assert event.subject_ref == subject_pseudonym(patient.pk)
    assert event.details == {"keys_destroyed": 1}
    assert chain_verify().ok

    # Erasing again changes nothing, not even the audit log.
    events_before = AuditEvent.objects.count()
    out = StringIO()
    call_command("erase_patient", str(patient.pk), "--yes", stdout=out)
    assert "already erased" in out.getvalue()
    assert patient_erase(patient=user) is False
    assert AuditEvent.objects.count() == events_before


@pytest.mark.django_db
def test_an_address_at_the_erased_domain_does_not_count_as_erased(api_client):
    """Sign-up accepts any valid address, `…@erased.invalid` too; erasure must still happen."""
    response = api_client.post(
        "/api/auth/register/patient",
        data=json.dumps(
            {
                "email": "erased-1@erased.invalid",
                "password": PASSWORD,
                "first_name": FIRST_NAME_MARKER,
                "last_name": LAST_NAME_MARKER,
                "date_of_birth": "1990-01-01",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201
    patient = User.objects.get(pk=response.json()["user"]["id"])
    assert not patient_is_erased(patient)

    out = StringIO()
    call_command("erase_patient", str(patient.pk), "--yes", stdout=out)

    assert f"Patient {patient.pk} erased." in out.getvalue()
    assert _values(patient.pk) == [ERASED] * 3
    assert AuditEvent.objects.filter(action=AuditAction.ERASURE_COMPLETE).count() == 1


@pytest.mark.django_db
def test_erase_patient_refuses_unknown_ids_and_staff(make_patient):
    staff = StaffFactory()
    with pytest.raises(CommandError, match="No patient with id 987654"):
        call_command("erase_patient", "987654", "--yes")
    with pytest.raises(CommandError, match=f"No patient with id {staff.pk}"):
        call_command("erase_patient", str(staff.pk), "--yes")
    assert not AuditEvent.objects.filter(action=AuditAction.ERASURE_COMPLETE).exists()


# --- Nothing left at rest ---------------------------------------------------------------------


def _sqlite_database_bytes() -> bytes:
    """The test database file and its write-ahead log, byte for byte."""
    path = Path(connection.settings_dict["NAME"])
    assert path.is_file(), f"the SQLite test database should be a file, not {path}"
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _postgresql_rows_as_text() -> bytes:
    """Every row of every table, each cast to its text form (bytea shows as hex)."""
    quote = connection.ops.quote_name
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT CAST(t AS text) FROM {quote(table)} AS t")
            parts.extend(row[0] for row in cursor.fetchall())
    return "\n".join(parts).encode()


@pytest.mark.django_db(transaction=True)
def test_after_erasure_no_marker_is_left_in_the_stored_database(two_patients):
    """The ciphertexts stay (the rows are kept), but nothing in them or anywhere else opens."""
    doomed, kept, _doctor = two_patients
    call_command("erase_patient", str(doomed.user.pk), "--yes", stdout=StringIO())

    if connection.vendor == "sqlite":
        stored = _sqlite_database_bytes()
    elif connection.vendor == "postgresql":
        stored = _postgresql_rows_as_text()
    else:
        pytest.fail(f"no at-rest check for the {connection.vendor} backend")

    # What we read holds the rows: the other patient's address and the erased envelopes.
    assert kept.email.encode() in stored
    erased_envelope = stored_value(PatientProfile, doomed.user.pk, "first_name")
    assert erased_envelope.startswith("pt1$") and erased_envelope.encode() in stored
    for marker in (*MARKERS, "1937-04-21"):
        for pattern in (marker.encode(), marker.lower().encode(), marker.encode().hex().encode()):
            assert pattern not in stored, f"{marker!r} found in the {connection.vendor} database"
    assert _values(kept.pk)[3:] == [TITLE_MARKER, BODY_MARKER]


# --- Nothing in the logs ----------------------------------------------------------------------


@pytest.mark.django_db
def test_no_marker_reaches_the_logs(caplog, api_client, make_patient):
    """Every logger at DEBUG, SQL logging on: sign-up, writing, reading (also a failed
    decryption) and erasure leave no name or medical text in any log record."""
    names = ["", *logging.root.manager.loggerDict]
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)
    silent = [logging.getLogger(name) for name in names if not logging.getLogger(name).propagate]
    for logger in silent:
        logger.addHandler(caplog.handler)
    try:
        with CaptureQueriesContext(connection):  # logs every SQL statement with its parameters
            response = api_client.post(
                "/api/auth/register/patient",
                data=json.dumps(
                    {
                        "email": "log-control-4b1c@example.com",
                        "password": PASSWORD,
                        "first_name": FIRST_NAME_MARKER,
                        "last_name": LAST_NAME_MARKER,
                        "date_of_birth": "1937-04-21",
                    }
                ),
                content_type="application/json",
            )
            assert response.status_code == 201
            token = response.json()["token"]
            patient = User.objects.get(pk=response.json()["user"]["id"])
            clinic = ClinicFactory()
            doctor = StaffFactory(clinic=clinic)
            entries = [
                record_entry_write(
                    author=doctor,
                    patient=patient,
                    clinic=clinic,
                    title=f"{TITLE_MARKER}{number}",
                    body=f"{BODY_MARKER}{number}",
                )
                for number in range(2)
            ]
            record = api_client.get("/api/patient/record", **bearer(token))
            assert TITLE_MARKER in record.content.decode()  # the markers did go through
            assert all(
                entry.title.startswith(TITLE_MARKER)
                for entry in record_read(actor=doctor, patient=patient).entries
            )
            # A value that fails to decrypt is logged (by row, never by content): one entry's
            # title moved onto the other's row.
            stored_value_set(
                RecordEntry,
                entries[1].pk,
                "title",
                stored_value(RecordEntry, entries[0].pk, "title"),
            )
            assert api_client.get("/api/patient/record", **bearer(token)).status_code == 500
            call_command("erase_patient", str(patient.pk), "--yes", stdout=StringIO())
    finally:
        for logger in silent:
            logger.removeHandler(caplog.handler)

    # The check saw the traffic: SQL statements with their parameters and the decryption error.
    messages = [record.getMessage() for record in caplog.records]
    assert any("log-control-4b1c@example.com" in message for message in messages)
    assert any(record.name == "patterm.api" for record in caplog.records)
    logged = "\n".join([*messages, caplog.text])
    for marker in (*MARKERS, "1937-04-21"):
        assert marker.lower() not in logged.lower(), f"{marker!r} reached the logs"
