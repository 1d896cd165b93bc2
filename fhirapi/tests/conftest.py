"""The consent tests' world (consent/tests/conftest.py) with FHIR tokens: the same patient,
entry, appointment and the same thirteen relationships to them, each actor holding a token
with SMART scopes (`patient/*.rs` for the patients, `user/*.rs` for staff)."""

from dataclasses import dataclass

import pytest

from accounts.models import Role
from accounts.services import ClientInfo, token_issue
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.tests.builders import bearer, slot_make
from consent.tests.conftest import world_build
from vault.tests.factories import record_entry_write

FHIR = "/fhir/R4"


def fhir_token(user, scope: str) -> str:
    issued = token_issue(
        user=user, client=ClientInfo(address="127.0.0.1", user_agent="pytest"), scope=scope
    )
    return issued.raw


def fhir_headers(token: str, **extra) -> dict:
    return {
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "application/fhir+json",
        **extra,
    }


@pytest.fixture
def fhir_world(make_patient):
    world = world_build(make_patient)
    for actor in world.actors.values():
        if actor.user is not None:
            scope = "patient/*.rs" if actor.user.role == Role.PATIENT else "user/*.rs"
            actor.token = fhir_token(actor.user, scope)
    return world


@dataclass
class Record:
    """A patient with one coded entry of every category, written at their home clinic, a booked
    appointment there, and FHIR tokens for the patient and the clinic's practitioner."""

    patient: object
    patient_token: str
    doctor: object
    doctor_token: str
    clinic: object
    appointment_id: str
    entries: dict  # category -> RecordEntry


ENTRIES = [
    ("diagnosis", "Essentielle Hypertonie", "I10.90"),
    ("medication", "Ramipril 5 mg", "C09AA05"),
    ("allergy", "Penicillin", "91936005"),
    ("lab_result", "HbA1c 6,1 %", "4548-4"),
    ("note", "Verlauf", None),
]


@pytest.fixture
def record(make_patient, api_client):
    issued = make_patient(first_name="Ida", last_name="Pfeiffer")
    clinic = ClinicFactory(name="Praxis Mitte")
    doctor = StaffFactory(clinic=clinic)
    entries = {
        category: record_entry_write(
            author=doctor,
            patient=issued.user,
            clinic=clinic,
            category=category,
            title=title,
            body=f"{title}: Befund",
            code=code,
        )
        for category, title, code in ENTRIES
    }
    booked = api_client.post(
        "/api/appointments",
        data={
            "slot_id": slot_make(practitioner=doctor, clinic=clinic).public_id,
            "reason": "Kontrolle",
        },
        content_type="application/json",
        **bearer(issued.raw),
    )
    assert booked.status_code == 201, booked.content
    return Record(
        patient=issued.user,
        patient_token=fhir_token(issued.user, "patient/*.rs"),
        doctor=doctor,
        doctor_token=fhir_token(doctor, "user/*.rs"),
        clinic=clinic,
        appointment_id=booked.json()["id"],
        entries=entries,
    )
