"""GET /api/patient/record through the HTTP layer, as the patient's app calls it."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from accounts.services import ClientInfo, token_issue
from accounts.tests.factories import ClinicFactory, StaffFactory
from vault import keys
from vault.models import PatientKey, RecordCategory, RecordEntry
from vault.tests.factories import record_entry_write, stored_value, stored_value_set

pytestmark = pytest.mark.django_db

RECORD_URL = "/api/patient/record"


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_the_patient_gets_their_profile_and_every_entry_decrypted(api_client, make_patient):
    issued = make_patient(first_name="Ida", last_name="Pfeiffer")
    patient = issued.user
    home = ClinicFactory(name="Hausarztpraxis Mitte")
    lab = ClinicFactory(name="Labor Nord")
    doctor = StaffFactory(clinic=home, first_name="Anna", last_name="Berger")
    chemist = StaffFactory(clinic=lab, first_name="Jonas", last_name="Klein")
    diagnosis = record_entry_write(
        author=doctor,
        patient=patient,
        clinic=home,
        category=RecordCategory.DIAGNOSIS,
        title="Asthma bronchiale",
        body="Leichtes, gut kontrolliertes Asthma.",
    )
    lab_result = record_entry_write(
        author=chemist,
        patient=patient,
        clinic=lab,
        category=RecordCategory.LAB_RESULT,
        title="Blutbild",
        body="Hb 13,9 g/dl",
    )

    response = api_client.get(RECORD_URL, **bearer(issued.raw))

    assert response.status_code == 200
    body = response.json()
    profile = body["profile"]
    assert (profile["id"], profile["email"]) == (patient.pk, patient.email)
    assert (profile["first_name"], profile["last_name"], profile["date_of_birth"]) == (
        "Ida",
        "Pfeiffer",
        "1984-08-12",
    )
    assert body["hidden_count"] == 0
    entries = {entry["id"]: entry for entry in body["entries"]}
    assert set(entries) == {str(diagnosis.pk), str(lab_result.pk)}
    assert entries[str(diagnosis.pk)] | {"created_at": None} == {
        "id": str(diagnosis.pk),
        "category": "diagnosis",
        "title": "Asthma bronchiale",
        "body": "Leichtes, gut kontrolliertes Asthma.",
        "code": None,
        "clinic": {"id": home.pk, "name": "Hausarztpraxis Mitte"},
        "author": {"id": doctor.pk, "name": "Anna Berger"},
        "created_at": None,
        "basis": "self",
    }
    second = entries[str(lab_result.pk)]
    assert (second["title"], second["body"], second["basis"]) == (
        "Blutbild",
        "Hb 13,9 g/dl",
        "self",
    )
    assert second["clinic"] == {"id": lab.pk, "name": "Labor Nord"}
    assert second["author"] == {"id": chemist.pk, "name": "Jonas Klein"}
    assert entries[str(diagnosis.pk)]["created_at"]


@pytest.mark.parametrize("role", [Role.PRACTITIONER, Role.CLINIC_ADMIN, Role.AUDITOR])
def test_staff_have_no_patient_record(api_client, make_patient, role):
    make_patient()
    staff = StaffFactory(role=role)
    issued = token_issue(user=staff, client=ClientInfo())

    response = api_client.get(RECORD_URL, **bearer(issued.raw))

    assert response.status_code == 403
    assert response.json()["code"] == "not_a_patient"


@pytest.mark.parametrize("headers", [{}, bearer("ptk_not-a-real-token")], ids=["none", "bad"])
def test_without_a_valid_token_the_answer_is_401(api_client, make_patient, headers):
    make_patient()

    response = api_client.get(RECORD_URL, **headers)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def _patient_with_entries(make_patient, count: int):
    issued = make_patient()
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    with keys.request_key_cache():
        for number in range(count):
            record_entry_write(
                author=author, patient=issued.user, clinic=clinic, title=f"Titel {number}"
            )
    return issued


def test_a_record_page_costs_the_same_queries_for_5_or_30_entries(api_client, make_patient):
    small, large = _patient_with_entries(make_patient, 5), _patient_with_entries(make_patient, 30)
    results = {}
    for issued in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = api_client.get(RECORD_URL, **bearer(issued.raw))
        assert response.status_code == 200
        results[len(response.json()["entries"])] = [q["sql"] for q in queries.captured_queries]

    assert set(results) == {5, 30}
    # The token with its user, the profile with the data key, the entries, the audit row (no
    # hidden count for the patient themself, no transaction of the read's own: decision 0023)
    # and the appointments: the same five for 5 or 30 entries.
    assert len(results[5]) == len(results[30]) == 5, results[30]
    # The middleware's key cache: the profile's query brings the live data key (a subquery),
    # unwrapped once for profile and entries; no query of its own fetches a key.
    table = PatientKey._meta.db_table
    for queries in results.values():
        assert not [sql for sql in queries if sql.startswith(f'SELECT "{table}".')], queries
        (profile_query,) = [sql for sql in queries if 'FROM "vault_patientprofile"' in sql]
        assert f'FROM "{table}" k' in profile_query


def test_a_tampered_ciphertext_is_a_500_that_shows_no_plaintext(api_client, make_patient):
    issued = make_patient(first_name="Ida", last_name="Pfeiffer")
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    texts = []
    for number in range(3):
        title, body = f"MARKERTITEL{number}x9", f"MARKERBEFUND{number}x9"
        texts += [title, body]
        entry = record_entry_write(
            author=author, patient=issued.user, clinic=clinic, title=title, body=body
        )
    # Change one character in the middle of the last entry's base64 payload.
    envelope = stored_value(RecordEntry, entry.pk, "body")
    head, _, payload = envelope.rpartition("$")
    middle = len(payload) // 2
    flipped = "B" if payload[middle] == "A" else "A"
    stored_value_set(
        RecordEntry, entry.pk, "body", f"{head}${payload[:middle]}{flipped}{payload[middle + 1 :]}"
    )

    response = api_client.get(RECORD_URL, **bearer(issued.raw))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "decryption_failed"
    content = response.content.decode()
    for text in [*texts, "Ida", "Pfeiffer", "1984-08-12"]:
        assert text not in content


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_the_seed_walkthrough_register_book_slot_001_and_read_the_record(api_client):
    """The original README's HTTPie walkthrough, on the demo data of `make run`."""
    call_command("seed_demo", verbosity=0)
    signed_up = api_client.post(
        "/api/auth/register/patient",
        data={
            "email": "p.demo@example.com",
            "password": "Sicher!123",
            "first_name": "Pat",
            "last_name": "Demo",
            "date_of_birth": "1990-01-01",
        },
        content_type="application/json",
    )
    token = signed_up.json()["token"]

    booked = api_client.post(
        "/api/appointments",
        data={"slot_id": "slot-001"},
        content_type="application/json",
        **bearer(token),
    )
    record = api_client.get(RECORD_URL, **bearer(token))

    assert booked.status_code == 201, booked.content
    assert record.status_code == 200
    appointments = record.json()["appointments"]
    assert [a["slot"]["id"] for a in appointments] == ["slot-001"]
    assert appointments[0]["status"] == "booked"
    assert "patient" not in appointments[0]  # the booking snapshot is for the clinic's staff


def test_the_schema_names_the_export_formats(api_client, make_patient):
    # Found by schemathesis: `format` was a free string in the schema but only json and fhir pass.
    schema = api_client.get("/api/openapi.json").json()
    export = schema["paths"]["/api/patient/record/export"]["get"]
    (param,) = [p for p in export["parameters"] if p["name"] == "format"]
    assert param["schema"]["enum"] == ["json", "fhir"]

    bad = api_client.get("/api/patient/record/export", {"format": ""}, **bearer(make_patient().raw))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "format"
