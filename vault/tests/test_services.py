"""Patient sign-up (vault.services.patient_register), and what it leaves in the database (E7)."""

import datetime
from pathlib import Path

import pytest
from django.db import connection

from accounts.models import ApiToken, Role, User
from audit.models import AuditAction, AuditEvent
from patterm.errors import Conflict, InvalidInput
from vault import keys
from vault.models import PatientKey, PatientProfile
from vault.services import patient_profile_get


def _row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (User, PatientKey, PatientProfile, ApiToken, AuditEvent)
    }


@pytest.mark.django_db
def test_register_creates_account_wrapped_key_profile_token_and_audit_row(make_patient):
    issued = make_patient(
        email="Ida.Pfeiffer@Example.com",
        first_name="Ida",
        last_name="Pfeiffer",
        date_of_birth=datetime.date(1797, 10, 14),
    )
    user = User.objects.get(pk=issued.user.pk)
    assert (user.email, user.role) == ("ida.pfeiffer@example.com", Role.PATIENT)
    assert user.check_password("Lange-Reise-2026")
    assert ApiToken.objects.get(user=user).pk == issued.token.pk
    assert issued.raw.startswith("ptk_")

    patient_key = PatientKey.objects.get(patient=user)
    ring = keys.master_key_ring()
    assert patient_key.master_key_version == ring.active_version
    assert patient_key.destroyed_at is None
    wrapped = bytes(patient_key.wrapped_key)
    data_key = keys.data_key(patient_key.pk, user.pk)
    assert len(data_key) == 32
    assert len(wrapped) == 12 + 32 + 16  # nonce, the sealed 32-byte key, tag
    for material in (data_key, *ring.keys.values()):
        assert material not in wrapped

    profile = patient_profile_get(patient=user)
    assert profile is not None
    assert (profile.first_name, profile.last_name) == ("Ida", "Pfeiffer")
    assert profile.date_of_birth == datetime.date(1797, 10, 14)

    event = AuditEvent.objects.get()
    assert (event.action, event.actor_id, event.object_id) == (
        AuditAction.AUTH_REGISTER,
        user.pk,
        str(user.pk),
    )
    assert event.subject_ref and event.subject_ref != str(user.pk)  # a pseudonym, not the id


@pytest.mark.django_db
def test_a_refused_password_stores_nothing(make_patient):
    before = _row_counts()
    with pytest.raises(InvalidInput) as raised:
        make_patient(email="kurz@example.com", password="kurz")
    assert raised.value.code == "validation_error"
    assert {error["field"] for error in raised.value.errors} == {"password"}
    assert _row_counts() == before == dict.fromkeys(before, 0)


@pytest.mark.django_db
def test_an_address_taken_in_another_case_is_a_conflict_and_stores_nothing(make_patient):
    first = make_patient(email="anna.schmidt@example.com", first_name="Anna")
    before = _row_counts()
    with pytest.raises(Conflict) as raised:
        make_patient(email="  Anna.Schmidt@EXAMPLE.com ", first_name="Mallory")
    assert raised.value.code == "email_taken"
    assert raised.value.status == 409
    assert _row_counts() == before
    # The first account is untouched and still opens.
    assert patient_profile_get(patient=first.user).first_name == "Anna"


# --- E7: marker strings never reach the database in plaintext -------------------------------

FIRST_NAME_MARKER = "MARKERVORNAME7f3a"
LAST_NAME_MARKER = "MARKERNACHNAME9b1c"
BIRTH_DATE = datetime.date(1937, 4, 21)
CONTROL_EMAIL = "marker-control-5e2d@example.com"  # stored in plaintext: proves we read the data


def _forbidden_patterns() -> dict[str, list[bytes]]:
    texts = [FIRST_NAME_MARKER, LAST_NAME_MARKER, BIRTH_DATE.isoformat(), "21.04.1937"]
    patterns = {}
    for text in texts:
        raw = text.encode()
        # Plain bytes, upper/lower case, and the hex form PostgreSQL gives bytea as text.
        patterns[text] = [raw, raw.lower(), raw.upper(), raw.hex().encode()]
    return patterns


def _sqlite_database_bytes() -> bytes:
    """The test database file and its write-ahead log, byte for byte."""
    path = Path(connection.settings_dict["NAME"])
    assert path.is_file(), f"the SQLite test database should be a file, not {path}"
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _postgresql_dump_bytes() -> bytes:
    """Every row of every table, each cast to its text form (bytea shows as hex)."""
    quote = connection.ops.quote_name
    parts = []
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        assert PatientProfile._meta.db_table in tables
        for table in tables:
            cursor.execute(f"SELECT CAST(t AS text) FROM {quote(table)} AS t")
            parts.extend(row[0] for row in cursor.fetchall())
    return "\n".join(parts).encode()


@pytest.mark.django_db(transaction=True)
def test_names_and_birth_date_are_absent_from_the_stored_database(make_patient):
    """E7: committed sign-up data, read the way a stolen disk or a dump shows it."""
    make_patient(
        email=CONTROL_EMAIL,
        first_name=FIRST_NAME_MARKER,
        last_name=LAST_NAME_MARKER,
        date_of_birth=BIRTH_DATE,
    )
    if connection.vendor == "sqlite":
        stored = _sqlite_database_bytes()
    elif connection.vendor == "postgresql":
        stored = _postgresql_dump_bytes()
    else:
        pytest.fail(f"no at-rest check for the {connection.vendor} backend")

    assert CONTROL_EMAIL.encode() in stored  # the patient's rows are in what we read
    for text, patterns in _forbidden_patterns().items():
        for pattern in patterns:
            assert pattern not in stored, f"{text!r} found in the {connection.vendor} database"
    # And the values are still there for the patient, encrypted.
    profile = PatientProfile.objects.get(patient__email=CONTROL_EMAIL)
    assert (profile.first_name, profile.date_of_birth) == (FIRST_NAME_MARKER, BIRTH_DATE)
