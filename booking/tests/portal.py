"""A small world for the portal's patient pages: one patient with an appointment, a record
entry and a consent; another patient with the same; a practitioner, a clinic admin and an
auditor. The page tests log in as each of them with a browser session."""

from dataclasses import dataclass, field

from django.test import Client

from accounts.models import Role, User
from accounts.tests.factories import ClinicFactory, StaffFactory
from booking.models import Appointment, Slot
from booking.services import appointment_book
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from consent.models import Consent
from consent.services import consent_grant
from vault.tests.factories import record_entry_write

PASSWORD = "Lange-Reise-2026"
ROLES = ("anonymous", "patient", "other_patient", "practitioner", "clinic_admin", "auditor")


@dataclass
class PortalWorld:
    patient: User
    other_patient: User
    clinic: object
    other_clinic: object
    doctor: User
    free_slot: Slot
    appointment: Appointment
    other_appointment: Appointment
    consent: Consent
    other_consent: Consent
    users: dict = field(default_factory=dict)

    def client_for(self, role: str) -> Client:
        client = Client()
        if self.users.get(role) is not None:
            client.force_login(self.users[role])
        return client


def portal_world(make_patient) -> PortalWorld:
    patient = make_patient(email="erika@example.com").user
    other = make_patient(email="max@example.com", first_name="Max").user
    clinic = ClinicFactory(name="Praxis am Weinbergsweg", city="Berlin")
    other_clinic = ClinicFactory(name="Hautarztpraxis Hamburg", city="Hamburg")
    doctor = practitioner_create(clinic=clinic, first_name="Anna", last_name="Berger")
    # Fixed times three days ahead (slot_create's default drifts with the suite's other tests):
    # bookable, before the cut-off, and well within a session's lifetime when tests travel.
    appointment = appointment_book(
        patient=patient,
        slot_id=slot_create(practitioner=doctor, starts_at=days_ahead(3, 9)).public_id,
    )
    other_appointment = appointment_book(
        patient=other,
        slot_id=slot_create(practitioner=doctor, starts_at=days_ahead(3, 10)).public_id,
    )
    record_entry_write(author=doctor, patient=patient, clinic=clinic)
    consent = consent_grant(
        patient=patient,
        grantee_clinic_id=other_clinic.pk,
        source_clinic_id=None,
        categories=["diagnosis"],
        valid_until=None,
    )
    other_consent = consent_grant(
        patient=other,
        grantee_clinic_id=other_clinic.pk,
        source_clinic_id=None,
        categories=["diagnosis"],
        valid_until=None,
    )
    users = {
        "anonymous": None,
        "patient": patient,
        "other_patient": other,
        "practitioner": doctor,
        "clinic_admin": StaffFactory(clinic=clinic, role=Role.CLINIC_ADMIN),
        "auditor": StaffFactory(role=Role.AUDITOR),
    }
    return PortalWorld(
        patient=patient,
        other_patient=other,
        clinic=clinic,
        other_clinic=other_clinic,
        doctor=doctor,
        free_slot=slot_create(practitioner=doctor, starts_at=days_ahead(3, 11)),
        appointment=appointment,
        other_appointment=other_appointment,
        consent=consent,
        other_consent=other_consent,
        users=users,
    )


def expected(table: dict, role: str) -> int:
    """A row of a page table: `patient` for the owner, `other_patient` for another patient,
    `staff` for practitioner, clinic admin and auditor alike unless named."""
    if role in table:
        return table[role]
    if role in ("practitioner", "clinic_admin", "auditor") and "staff" in table:
        return table["staff"]
    return table["patient"] if role == "other_patient" else table["default"]
