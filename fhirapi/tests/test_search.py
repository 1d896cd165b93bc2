"""FHIR search semantics: dates with prefixes, codes and categories, statuses, paging with
total and next links, and a number of queries that does not grow with the rows."""

import datetime
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import StaffFactory
from audit.tests.builders import bearer, slot_make, token_for
from fhirapi.tests.conftest import FHIR, fhir_headers
from vault.models import RecordEntry
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [e["resource"]["id"] for e in response.json().get("entry", []) if "id" in e["resource"]]


def _written_on(entry, day: datetime.datetime):
    RecordEntry.objects.filter(pk=entry.pk).update(created_at=day)
    return str(entry.pk)


@pytest.fixture
def dated(record):
    """Three lab results, written on 2026-01-10, 2026-02-10 and 2026-03-10 (noon UTC)."""
    lab = record.entries["lab_result"]
    ids = [_written_on(lab, datetime.datetime(2026, 1, 10, 12, tzinfo=datetime.UTC))]
    for month in (2, 3):
        entry = record_entry_write(
            author=record.doctor,
            patient=record.patient,
            clinic=record.clinic,
            category="lab_result",
            title=f"HbA1c {month}",
            code="4548-4",
        )
        ids.append(_written_on(entry, datetime.datetime(2026, month, 10, 12, tzinfo=datetime.UTC)))
    return record, ids


@pytest.mark.parametrize(
    ("query", "months"),
    [
        ("date=2026-02-10", [2]),
        ("date=eq2026-02", [2]),
        ("date=2026", [1, 2, 3]),
        ("date=ge2026-02-10", [2, 3]),
        ("date=gt2026-02-10", [3]),
        ("date=le2026-02-10", [1, 2]),
        ("date=lt2026-02-10", [1]),
        ("date=ge2026-01-15&date=le2026-03-01", [2]),  # two occurrences: both hold
        ("date=2026-01-10,2026-03-10", [1, 3]),  # comma: either
        ("date=ge2026-02-10T12:00:00Z", [2, 3]),
        ("date=gt2026-02-10T12:00:00Z", [3]),
        ("date=lt2026-02-10T13:00:00%2B01:00", [1]),  # 12:00 UTC is not before 12:00 UTC
        ("date=2027", []),
    ],
)
def test_observation_dates_with_prefixes(api_client, dated, query, months):
    record, ids = dated
    response = api_client.get(f"{FHIR}/Observation?{query}", **fhir_headers(record.patient_token))
    expected = [ids[month - 1] for month in sorted(months, reverse=True)]  # newest first
    assert _ids(response) == expected


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("code=I10.90", True),
        ("code=http://fhir.de/CodeSystem/bfarm/icd-10-gm|I10.90", True),
        ("code=http://snomed.info/sct|I10.90", False),
        ("code=I10.9", False),
        ("code=E11.9,I10.90", True),
        ("category=encounter-diagnosis", True),
        (
            "category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
            True,
        ),
        ("category=problem-list-item", False),
        ("recorded-date=ge2000-01-01", True),
        ("recorded-date=lt2000-01-01", False),
    ],
)
def test_condition_codes_categories_and_dates(api_client, record, query, found):
    diagnosis = str(record.entries["diagnosis"].pk)
    response = api_client.get(
        f"{FHIR}/Condition?{query}",
        **fhir_headers(record.doctor_token + "") if False else fhir_headers(record.patient_token),
    )
    assert _ids(response) == ([diagnosis] if found else [])


def test_observation_category_and_loinc_code(api_client, record):
    headers = fhir_headers(record.patient_token)
    lab = str(record.entries["lab_result"].pk)
    assert _ids(api_client.get(f"{FHIR}/Observation?category=laboratory", **headers)) == [lab]
    assert _ids(api_client.get(f"{FHIR}/Observation?category=vital-signs", **headers)) == []
    assert _ids(api_client.get(f"{FHIR}/Observation?code=http://loinc.org|4548-4", **headers)) == [
        lab
    ]
    assert _ids(api_client.get(f"{FHIR}/MedicationStatement?code=C09AA05", **headers)) == [
        str(record.entries["medication"].pk)
    ]


def test_paging_gives_the_total_and_follows_next_links_to_the_end(api_client, record):
    for number in range(4):
        record_entry_write(
            author=record.doctor, patient=record.patient, clinic=record.clinic, title=f"D{number}"
        )
    headers = fhir_headers(record.doctor_token)
    url = f"{FHIR}/Condition?patient={record.patient.pk}&_count=2"
    seen, pages = [], 0
    while url:
        bundle = api_client.get(url, **headers).json()
        assert bundle["type"] == "searchset" and bundle["total"] == 5
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert urlsplit(links["self"]).path == "/fhir/R4/Condition"
        seen += [entry["resource"]["id"] for entry in bundle["entry"]]
        url = links.get("next")
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    default = api_client.get(f"{FHIR}/Condition?patient={record.patient.pk}", **headers).json()
    assert len(default["entry"]) == 5 and "next" not in {
        link["relation"] for link in default["link"]
    }


def test_appointments_by_date_and_status(api_client, record):
    headers = fhir_headers(record.patient_token)
    start = timezone.localdate() + datetime.timedelta(days=3)
    assert _ids(api_client.get(f"{FHIR}/Appointment?status=booked", **headers)) == [
        record.appointment_id
    ]
    assert _ids(api_client.get(f"{FHIR}/Appointment?status=cancelled", **headers)) == []
    assert _ids(api_client.get(f"{FHIR}/Appointment?status=noshow", **headers)) == []
    assert _ids(api_client.get(f"{FHIR}/Appointment?date=ge{start:%Y-%m-%d}", **headers)) == [
        record.appointment_id
    ]
    assert _ids(api_client.get(f"{FHIR}/Appointment?date=lt{start:%Y-%m-%d}", **headers)) == []
    cancelled = api_client.post(
        f"/api/appointments/{record.appointment_id}/cancel",
        **bearer(token_for(record.patient)),  # cancelling is an /api operation
    )
    assert cancelled.status_code == 200, cancelled.content
    assert _ids(api_client.get(f"{FHIR}/Appointment?status=cancelled", **headers)) == [
        record.appointment_id
    ]


def test_patients_see_free_slots_only_and_staff_their_clinics_busy_ones(api_client, record):
    free = slot_make(practitioner=record.doctor, clinic=record.clinic, days=5)
    patient, doctor = fhir_headers(record.patient_token), fhir_headers(record.doctor_token)
    assert _ids(api_client.get(f"{FHIR}/Slot", **patient)) == [free.public_id]
    assert len(_ids(api_client.get(f"{FHIR}/Slot", **doctor))) == 2
    assert _ids(api_client.get(f"{FHIR}/Slot?status=free", **doctor)) == [free.public_id]
    [busy] = _ids(api_client.get(f"{FHIR}/Slot?status=busy", **doctor))
    assert api_client.get(f"{FHIR}/Slot/{busy}", **patient).status_code == 404
    [schedule] = _ids(
        api_client.get(f"{FHIR}/Schedule?actor=Practitioner/{record.doctor.pk}", **patient)
    )
    assert _ids(api_client.get(f"{FHIR}/Slot?schedule=Schedule/{schedule}", **patient)) == [
        free.public_id
    ]
    other = StaffFactory(clinic=record.clinic)
    assert _ids(api_client.get(f"{FHIR}/Schedule?actor=Practitioner/{other.pk}", **patient)) != [
        schedule
    ]
    assert (
        len(_ids(api_client.get(f"{FHIR}/Schedule?actor=Location/{record.clinic.pk}", **patient)))
        == 2
    )


def _queries(client, url, token) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **fhir_headers(token))
    assert response.status_code == 200, response.content
    return len(queries)


@pytest.mark.parametrize(
    ("reader", "statements"),
    # token and user; for the practitioner their clinics (the acting one first, with care and
    # emergency access) and the consents; the entries; the audit row (decision 0023)
    [("patient", 4), ("doctor", 6)],
)
def test_a_record_search_costs_a_few_statements(api_client, record, reader, statements):
    token = record.patient_token if reader == "patient" else record.doctor_token
    url = f"{FHIR}/Condition" + (f"?patient={record.patient.pk}" if reader == "doctor" else "")

    assert _queries(api_client, url, token) == statements


def test_searches_take_a_constant_number_of_queries(api_client, record):
    patient_token, doctor_token = record.patient_token, record.doctor_token
    urls = {
        "Condition": (f"{FHIR}/Condition?patient={record.patient.pk}", doctor_token),
        "Condition (patient)": (f"{FHIR}/Condition?code=I10.90", patient_token),
        "Appointment": (f"{FHIR}/Appointment", patient_token),
        "Slot": (f"{FHIR}/Slot", doctor_token),
        "Schedule": (f"{FHIR}/Schedule", patient_token),
    }
    before = {name: _queries(api_client, url, token) for name, (url, token) in urls.items()}
    for day in range(4, 10):
        record_entry_write(
            author=record.doctor, patient=record.patient, clinic=record.clinic, code="I10.90"
        )
        slot_make(practitioner=record.doctor, clinic=record.clinic, days=day)
        StaffFactory(clinic=record.clinic)
    api = bearer(token_for(record.patient))
    for day in range(4, 7):
        slot = slot_make(practitioner=record.doctor, clinic=record.clinic, days=day, hour=5)
        booked = api_client.post(
            "/api/appointments",
            data={"slot_id": slot.public_id},
            content_type="application/json",
            **api,
        )
        assert booked.status_code == 201, booked.content
    after = {name: _queries(api_client, url, token) for name, (url, token) in urls.items()}
    assert after == before
