"""A small world for the staff pages' tests (booking, vault, audit and the admin).

Two clinics, North and South, each with a practitioner and a clinic admin; an auditor. Patient
P booked at North (in care there) and has one entry written there; patient Q booked at South.
North's practitioner declared emergency access to Q. Opening hours and an absence at each
clinic. Marker strings find decrypted personal or medical text in a page."""

import datetime
from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Clinic, Membership, Role, User
from accounts.tests.factories import ClinicFactory, StaffFactory
from booking.models import (
    Absence,
    Appointment,
    OpeningHours,
    PractitionerSpecialty,
    Slot,
    VisitMotive,
)
from booking.services import appointment_book
from booking.tests.factories import specialty_get
from consent.models import EmergencyAccess
from vault.models import RecordEntry
from vault.services import emergency_access_declare
from vault.tests.factories import record_entry_write

PASSWORD = "Lange-Reise-2026"
P_FIRST, P_LAST = "Zqxvorname", "Zqxnachname"
Q_FIRST, Q_LAST = "Qzyvorname", "Qzynachname"
REASON = "Zqxgrund Rueckenschmerzen"
ENTRY_TITLE = "Zqxtitel Hypertonie"
ENTRY_BODY = "Zqxbefund RR 150/95"
JUSTIFICATION = "Bewusstlos eingeliefert, Medikation unbekannt (Zqxnotfall)."
MARKERS = (P_FIRST, P_LAST, Q_FIRST, Q_LAST, REASON, ENTRY_TITLE, ENTRY_BODY, JUSTIFICATION)

ROLES = [
    "anonymous",
    "patient",
    "practitioner",
    "practitioner_other",
    "clinic_admin",
    "clinic_admin_other",
    "auditor",
]


@dataclass
class StaffWorld:
    north: Clinic
    south: Clinic
    users: dict  # role name (ROLES) -> User or None
    patient_q: User
    appointment: Appointment
    entry: RecordEntry
    emergency: EmergencyAccess | None
    hours_north: OpeningHours
    hours_south: OpeningHours
    absence_north: Absence
    absence_south: Absence

    @property
    def patient(self) -> User:
        return self.users["patient"]

    def client_for(self, role: str) -> Client:
        client = Client()
        if self.users.get(role) is not None:
            client.force_login(self.users[role])
        return client

    def membership(self, role: str) -> Membership:
        return Membership.objects.get(user=self.users[role])


def slot_at(*, practitioner: User, clinic: Clinic, days: int, hour: int) -> Slot:
    day = timezone.localdate() + datetime.timedelta(days=days)
    starts_at = timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour)))
    return Slot.objects.create(
        clinic=clinic,
        practitioner=practitioner,
        specialty=specialty_get("allgemeinmedizin"),
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=20),
    )


def _practitioner(clinic: Clinic, **fields) -> User:
    user = StaffFactory(clinic=clinic, role=Role.PRACTITIONER, **fields)
    PractitionerSpecialty.objects.create(
        membership=Membership.objects.get(user=user), specialty=specialty_get("allgemeinmedizin")
    )
    return user


def _hours(user: User) -> OpeningHours:
    return OpeningHours.objects.create(
        membership=Membership.objects.get(user=user),
        weekday=0,
        start_time=datetime.time(8),
        end_time=datetime.time(12),
        slot_minutes=20,
        specialty=specialty_get("allgemeinmedizin"),
    )


def _absence(user: User) -> Absence:
    start = timezone.now() + datetime.timedelta(days=10)
    return Absence.objects.create(
        membership=Membership.objects.get(user=user),
        starts_at=start,
        ends_at=start + datetime.timedelta(days=5),
    )


def world_build(make_patient, *, emergency: bool = True) -> StaffWorld:
    north = ClinicFactory(name="Praxis Nord", slug="praxis-nord")
    south = ClinicFactory(name="Praxis Süd", slug="praxis-sued")
    doctor = _practitioner(north, first_name="Nora", last_name="Nordarzt")
    other_doctor = _practitioner(south, first_name="Sven", last_name="Suedarzt")
    for practitioner in (doctor, other_doctor):  # one visit motive each (issue 16)
        VisitMotive.objects.create(
            membership=Membership.objects.get(user=practitioner),
            specialty=specialty_get("allgemeinmedizin"),
            name_de=f"Erstuntersuchung {practitioner.last_name}",
            name_en="First examination",
            duration_minutes=40,
        )
    patient = make_patient(email="p@example.com", first_name=P_FIRST, last_name=P_LAST).user
    patient_q = make_patient(email="q@example.com", first_name=Q_FIRST, last_name=Q_LAST).user
    appointment = appointment_book(
        patient=patient,
        slot_id=slot_at(practitioner=doctor, clinic=north, days=2, hour=9).public_id,
        reason=REASON,
    )
    appointment_book(
        patient=patient_q,
        slot_id=slot_at(practitioner=other_doctor, clinic=south, days=2, hour=10).public_id,
    )
    entry = record_entry_write(
        author=doctor, patient=patient, clinic=north, title=ENTRY_TITLE, body=ENTRY_BODY
    )
    emergency = (
        emergency_access_declare(actor=doctor, patient_id=patient_q.pk, justification=JUSTIFICATION)
        if emergency
        else None
    )
    users = {
        "anonymous": None,
        "patient": patient,
        "practitioner": doctor,
        "practitioner_other": other_doctor,
        "clinic_admin": StaffFactory(clinic=north, role=Role.CLINIC_ADMIN, is_staff=True),
        "clinic_admin_other": StaffFactory(clinic=south, role=Role.CLINIC_ADMIN, is_staff=True),
        "auditor": StaffFactory(clinic=north, role=Role.AUDITOR, is_staff=True),
    }
    return StaffWorld(
        north=north,
        south=south,
        users=users,
        patient_q=patient_q,
        appointment=appointment,
        entry=entry,
        emergency=emergency,
        hours_north=_hours(doctor),
        hours_south=_hours(other_doctor),
        absence_north=_absence(doctor),
        absence_south=_absence(other_doctor),
    )


@pytest.fixture
def staff_world(make_patient) -> StaffWorld:
    return world_build(make_patient)


def status_table(rows: dict[str, tuple]) -> list:
    """pytest params (page, role, expected status) from {page: (status per ROLES entry)}."""
    return [
        pytest.param(page, role, expected, id=f"{page}-{role}")
        for page, statuses in rows.items()
        for role, expected in zip(ROLES, statuses, strict=True)
    ]
