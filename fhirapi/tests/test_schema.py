"""Every resource type the FHIR API and the export give, checked against the official FHIR R4
JSON schema (fhirapi/tests/schema.py): a validator Patterm did not write."""

import pytest

from fhirapi.tests.conftest import FHIR, fhir_headers
from fhirapi.tests.schema import assert_r4_valid, schema_errors

pytestmark = pytest.mark.django_db

TYPES_OF_ENTRIES = {
    "Condition": "diagnosis",
    "MedicationStatement": "medication",
    "AllergyIntolerance": "allergy",
    "Observation": "lab_result",
}


def _get(client, url, token):
    response = client.get(FHIR + url, **fhir_headers(token))
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    return response


def test_the_validator_refuses_what_r4_does_not_allow():
    """The check can fail: an R5 status, a missing required element, an unknown element."""
    assert schema_errors({"resourceType": "Slot", "status": "free", "start": "x"})  # no schedule
    assert schema_errors(
        {
            "resourceType": "MedicationStatement",
            "status": "recorded",
            "subject": {"reference": "Patient/1"},
            "medicationCodeableConcept": {"text": "Ramipril"},
        }
    )
    assert schema_errors({"resourceType": "Patient", "id": "1", "nickname": "Idchen"})
    assert schema_errors({"resourceType": "Appointment", "status": "recorded", "participant": []})


def test_the_capability_statement_is_valid_r4(api_client):
    response = api_client.get(f"{FHIR}/metadata")
    assert response.status_code == 200
    assert_r4_valid(response.json())


@pytest.mark.parametrize("resource_type", sorted(TYPES_OF_ENTRIES))
def test_each_record_type_read_and_searched_is_valid_r4(api_client, record, resource_type):
    entry = record.entries[TYPES_OF_ENTRIES[resource_type]]
    read = _get(api_client, f"/{resource_type}/{entry.pk}", record.patient_token)
    assert read.status_code == 200, read.content
    assert read.json()["resourceType"] == resource_type
    assert_r4_valid(read.json())
    found = _get(api_client, f"/{resource_type}?patient={record.patient.pk}", record.doctor_token)
    assert found.status_code == 200, found.content
    assert found.json()["total"] == 1
    assert_r4_valid(found.json())


@pytest.mark.parametrize("token", ["patient", "doctor"])
def test_patient_and_appointment_are_valid_r4(api_client, record, token):
    token = record.patient_token if token == "patient" else record.doctor_token
    patient = _get(api_client, f"/Patient/{record.patient.pk}", token)
    appointment = _get(api_client, f"/Appointment/{record.appointment_id}", token)
    searched = _get(api_client, f"/Appointment?patient=Patient/{record.patient.pk}", token)
    for response in (patient, appointment, searched):
        assert response.status_code == 200, response.content
        assert_r4_valid(response.json())
    assert patient.json()["name"] == [{"family": "Pfeiffer", "given": ["Ida"]}]
    assert appointment.json()["reasonCode"] == [{"text": "Kontrolle"}]


def test_slot_and_schedule_are_valid_r4(api_client, record):
    slots = _get(api_client, "/Slot", record.doctor_token).json()
    schedules = _get(api_client, "/Schedule", record.doctor_token).json()
    assert slots["total"] == 1 and schedules["total"] == 1
    slot = slots["entry"][0]["resource"]
    assert slot["status"] == "busy"  # the booked one, shown to its clinic's staff
    schedule_id = schedules["entry"][0]["resource"]["id"]
    assert slot["schedule"] == {"reference": f"Schedule/{schedule_id}"}
    for body in (
        slots,
        schedules,
        _get(api_client, f"/Slot/{slot['id']}", record.doctor_token).json(),
        _get(api_client, f"/Schedule/{schedule_id}", record.doctor_token).json(),
    ):
        assert_r4_valid(body)


@pytest.mark.parametrize("resource_type", ["Practitioner", "Organization", "Location"])
@pytest.mark.parametrize("token", ["patient", "doctor"])
def test_the_directory_types_read_and_searched_are_valid_r4(
    api_client, record, resource_type, token
):
    token = record.patient_token if token == "patient" else record.doctor_token
    key = record.doctor.pk if resource_type == "Practitioner" else record.clinic.pk
    read = _get(api_client, f"/{resource_type}/{key}", token)
    found = _get(api_client, f"/{resource_type}?_id={key}", token)
    for response in (read, found):
        assert response.status_code == 200, response.content
        assert_r4_valid(response.json())
    assert read.json()["resourceType"] == resource_type
    assert found.json()["total"] == 1
    assert found.json()["entry"][0]["resource"] == read.json()


@pytest.mark.parametrize(
    "url",
    [
        "/Practitioner/999999",
        "/Location?organization=Organization/x",
        "/Condition?nonsense=1",
        "/Condition/not-a-uuid",
        "/Unknown",
        "/Observation?date=2026-13-01",
    ],
)
def test_operation_outcomes_are_valid_r4(api_client, record, url):
    response = _get(api_client, url, record.patient_token)
    assert response.status_code in (400, 404)
    assert response.json()["resourceType"] == "OperationOutcome"
    assert_r4_valid(response.json())


def test_the_export_bundle_and_every_resource_in_it_are_valid_r4(api_client, record):
    from audit.tests.builders import token_for

    token = token_for(record.patient).raw  # the export is an /api operation: an /api token
    response = api_client.get(
        "/api/patient/record/export", {"format": "fhir"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    bundle = response.json()
    types = {entry["resource"]["resourceType"] for entry in bundle["entry"]}
    assert types >= {
        "Patient",
        "Appointment",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
        "Observation",
        "DocumentReference",
        "Practitioner",
        "Organization",
        "Location",
        "AuditEvent",
    }
    assert_r4_valid(bundle)
    for entry in bundle["entry"]:
        assert_r4_valid(entry["resource"])
