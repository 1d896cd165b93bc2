"""GDPR: the patient's export (JSON and FHIR) and the erasure request."""

import datetime
import json

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from accounts.tests.factories import ClinicFactory, StaffFactory
from booking.models import Appointment, AppointmentStatus, Slot, Specialty
from vault.models import ErasureRequest
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

EXPORT_URL = "/api/patient/record/export"


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _slot(clinic, doctor, days: int) -> Slot:
    specialty, _ = Specialty.objects.get_or_create(
        slug="allgemeinmedizin", defaults={"name_de": "A", "name_en": "G"}
    )
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=days)
    return Slot.objects.create(
        clinic=clinic,
        practitioner=doctor,
        specialty=specialty,
        starts_at=start,
        ends_at=start + datetime.timedelta(minutes=20),
    )


@pytest.fixture
def patient_with_data(api_client, make_patient):
    issued = make_patient(first_name="Ida", last_name="Pfeiffer")
    clinic = ClinicFactory(name="Praxis Mitte")
    doctor = StaffFactory(clinic=clinic)
    for category, title, code in [
        ("diagnosis", "MARKERDIAGNOSE", "I10.90"),
        ("medication", "Ramipril", "C09AA05"),
        ("allergy", "Penicillin", "91936005"),
        ("lab_result", "HbA1c 6,1 %", "4548-4"),
        ("note", "Verlauf", None),
        ("document", "Arztbrief", None),
    ]:
        record_entry_write(
            author=doctor,
            patient=issued.user,
            clinic=clinic,
            category=category,
            title=title,
            body=f"{title} Befund",
            code=code,
        )
    api_client.post(
        "/api/appointments",
        data={"slot_id": _slot(clinic, doctor, 3).public_id, "reason": "Kontrolle"},
        content_type="application/json",
        **bearer(issued.raw),
    )
    api_client.post(
        "/api/patient/consents",
        data={"grantee_clinic": ClinicFactory().pk, "categories": ["allergy"]},
        content_type="application/json",
        **bearer(issued.raw),
    )
    return issued, clinic, doctor


def test_the_json_export_holds_everything_about_its_owner_only(
    api_client, make_patient, patient_with_data
):
    issued, clinic, doctor = patient_with_data
    other = make_patient(first_name="Otto")
    record_entry_write(
        author=doctor, patient=other.user, clinic=clinic, title="MARKERFREMD", body="fremd"
    )

    response = api_client.get(EXPORT_URL, **bearer(issued.raw))

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    body = json.loads(response.content)
    assert body["profile"]["first_name"] == "Ida"
    assert len(body["entries"]) == 6
    assert [a["reason"] for a in body["appointments"]] == ["Kontrolle"]
    assert [c["categories"] for c in body["consents"]] == [["allergy"]]
    assert any(row["action"] == "record.write" for row in body["access_log"])
    assert b"MARKERDIAGNOSE" in response.content
    assert b"MARKERFREMD" not in response.content
    assert b"Otto" not in response.content


def test_the_fhir_export_is_a_valid_bundle_with_a_resource_per_category(
    api_client, patient_with_data
):
    issued, _, _ = patient_with_data

    response = api_client.get(EXPORT_URL, {"format": "fhir"}, **bearer(issued.raw))

    assert response.status_code == 200
    bundle = Bundle.model_validate(json.loads(response.content))  # validates every resource
    types = [entry.resource.get_resource_type() for entry in bundle.entry]
    assert types[0] == "Patient"
    for expected in (
        "Appointment",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
        "Observation",
        "DocumentReference",
        "Consent",
        "AuditEvent",
    ):
        assert expected in types, expected
    assert len({entry.fullUrl for entry in bundle.entry}) == len(bundle.entry)


def test_an_unknown_export_format_is_422(api_client, make_patient):
    response = api_client.get(EXPORT_URL, {"format": "xml"}, **bearer(make_patient().raw))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "format"


def test_staff_cannot_export(api_client):
    from accounts.services import ClientInfo, token_issue

    staff = StaffFactory()
    token = token_issue(user=staff, client=ClientInfo()).raw

    assert api_client.get(EXPORT_URL, **bearer(token)).status_code == 403


def test_an_erasure_request_closes_the_account_and_frees_future_slots(
    api_client, patient_with_data
):
    issued, _, _ = patient_with_data
    appointment = Appointment.objects.get(patient=issued.user)

    response = api_client.post("/api/patient/erasure-request", **bearer(issued.raw))

    assert response.status_code == 202
    assert api_client.get("/api/me", **bearer(issued.raw)).status_code == 401
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert Slot.objects.get(pk=appointment.slot_id).is_booked is False
    request = ErasureRequest.objects.get(patient=issued.user)
    assert request.retain_until.year == timezone.localdate().year + 10
    assert response.json()["retain_until"] == request.retain_until.isoformat()


def test_erasure_waits_for_the_retention_period_unless_overridden(api_client, patient_with_data):
    issued, _, _ = patient_with_data
    api_client.post("/api/patient/erasure-request", **bearer(issued.raw))
    request = ErasureRequest.objects.get(patient=issued.user)

    with pytest.raises(CommandError, match="retained until"):
        call_command("erase_patient", str(issued.user.pk), "--yes")

    after = datetime.datetime.combine(
        request.retain_until + datetime.timedelta(days=1), datetime.time(12), tzinfo=datetime.UTC
    )
    with time_machine.travel(after, tick=False):
        call_command("erase_patient", str(issued.user.pk), "--yes")
    request.refresh_from_db()
    assert request.completed_at is not None


def test_an_operator_may_override_the_retention_period(api_client, patient_with_data):
    issued, _, _ = patient_with_data
    api_client.post("/api/patient/erasure-request", **bearer(issued.raw))

    call_command("erase_patient", str(issued.user.pk), "--yes", "--ignore-retention")

    assert ErasureRequest.objects.get(patient=issued.user).completed_at is not None


def _references(node):
    """Every `reference` value anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def test_every_reference_of_the_fhir_export_resolves_inside_the_bundle(
    api_client, patient_with_data
):
    issued, clinic, _ = patient_with_data

    response = api_client.get(EXPORT_URL, {"format": "fhir"}, **bearer(issued.raw))

    assert response["Content-Type"] == "application/fhir+json"
    body = json.loads(response.content)
    Bundle.model_validate(body)
    full_urls = {entry["fullUrl"] for entry in body["entry"]}
    references = list(_references(body))
    assert references, "the export has references"
    assert all(ref.startswith("urn:uuid:") for ref in references)
    assert set(references) <= full_urls, set(references) - full_urls
    by_type = {}
    for entry in body["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    # The clinic is an Organization, its address a Location, the doctor a Practitioner.
    assert clinic.name in {o["name"] for o in by_type["Organization"]}
    assert [loc["address"]["text"] for loc in by_type["Location"]] == [clinic.address]
    assert len(by_type["Practitioner"]) == 1
    (appointment,) = by_type["Appointment"]
    assert "description" not in appointment
    assert appointment["reasonCode"] == [{"text": "Kontrolle"}]
    assert appointment["specialty"][0]["text"] in {"A", "G"}  # the specialty, in either language
    actors = {p["actor"]["reference"] for p in appointment["participant"]}
    located = {e["fullUrl"]: e["resource"]["resourceType"] for e in body["entry"]}
    assert {located[a] for a in actors} == {"Patient", "Practitioner", "Location"}
    (medication,) = by_type["MedicationStatement"]
    assert medication["status"] == "active"  # R4 has no "recorded"
    (condition,) = by_type["Condition"]
    assert located[condition["recorder"]["reference"]] == "Practitioner"


def test_the_fhir_audit_events_carry_the_standard_codings(api_client, patient_with_data):
    issued, _, _ = patient_with_data

    body = api_client.get(EXPORT_URL, {"format": "fhir"}, **bearer(issued.raw)).json()

    events = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert events
    for event in events:
        assert event["type"]["system"] == "http://terminology.hl7.org/CodeSystem/audit-event-type"
        assert event["type"]["code"] == "rest"
        assert event["action"] in {"C", "R", "U", "D", "E"}
        assert event["outcome"] in {"0", "4", "8", "12"}
    writes = [e for e in events if e["subtype"][0]["code"] == "record.write"]
    assert writes and all(e["action"] == "C" and e["outcome"] == "0" for e in writes)


@pytest.mark.parametrize(
    ("resource_type", "field", "system", "code", "text"),
    [
        (
            "Condition",
            "code",
            "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
            "I10.90",
            "MARKERDIAGNOSE",
        ),
        (
            "MedicationStatement",
            "medicationCodeableConcept",
            "http://fhir.de/CodeSystem/bfarm/atc",
            "C09AA05",
            "Ramipril",
        ),
        ("AllergyIntolerance", "code", "http://snomed.info/sct", "91936005", "Penicillin"),
        ("Observation", "code", "http://loinc.org", "4548-4", "HbA1c 6,1 %"),
    ],
)
def test_the_fhir_export_codes_entries_in_their_system_and_keeps_the_text(
    api_client, patient_with_data, resource_type, field, system, code, text
):
    issued, _, _ = patient_with_data

    body = api_client.get(EXPORT_URL, {"format": "fhir"}, **bearer(issued.raw)).json()

    (resource,) = [
        e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == resource_type
    ]
    assert resource[field] == {"text": text, "coding": [{"system": system, "code": code}]}
