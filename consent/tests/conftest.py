"""A small world for the consent tests: one patient in care at a home clinic (booked there, one
diagnosis entry written there), and one practitioner per relationship a clinic can have with
that patient's record, each at a clinic of their own (consents are granted per clinic)."""

import datetime
import json
from dataclasses import dataclass, field

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from accounts.models import Role, User
from accounts.services import IssuedToken
from accounts.tests.factories import ClinicFactory
from audit.tests.builders import bearer, slot_make, staff_with_token, token_for
from booking.models import Appointment
from consent.models import Consent, EmergencyAccess
from consent.services import consent_grant, consent_revoke
from vault.models import RecordEntry
from vault.services import emergency_access_declare
from vault.tests.factories import record_entry_write

MARKER_TITLE = "Zqxmatrixtitel Diabetes"
MARKER_BODY = "Zqxmatrixbefund HbA1c 9,1 %"
JUSTIFICATION = "Bewusstlos eingeliefert, Vorerkrankungen und Medikation unbekannt."


@dataclass
class Actor:
    name: str
    user: User | None
    token: str | None
    clinic_id: int | None = None


@dataclass
class World:
    patient: User
    patient_token: str
    home: object
    doctor: User
    entry: RecordEntry
    appointment: Appointment
    consent: Consent
    actors: dict[str, Actor] = field(default_factory=dict)
    client: Client = field(default_factory=Client)

    def request(self, method: str, url: str, actor: Actor, body=None):
        headers = bearer(actor.token) if actor.token else {}
        if method == "GET":
            return self.client.get(url, **headers)
        return self.client.post(
            url, data=json.dumps(body or {}), content_type="application/json", **headers
        )


def _in_the_past(days: int):
    return time_machine.travel(timezone.now() - datetime.timedelta(days=days), tick=True)


def practitioner(name: str) -> tuple[Actor, object]:
    clinic = ClinicFactory()
    user, issued = staff_with_token(role=Role.PRACTITIONER, clinic=clinic)
    return Actor(name, user, issued.raw, clinic.pk), clinic


def world_build(make_patient) -> World:
    owner: IssuedToken = make_patient(email="owner@example.com")
    other: IssuedToken = make_patient(email="other@example.com")
    patient = owner.user

    home = ClinicFactory(name="Hausarztpraxis Mitte")
    doctor, doctor_token = staff_with_token(role=Role.PRACTITIONER, clinic=home)
    client = Client()
    slot = slot_make(practitioner=doctor, clinic=home)
    booked = client.post(
        "/api/appointments",
        data=json.dumps({"slot_id": slot.public_id}),
        content_type="application/json",
        **bearer(owner.raw),
    )
    assert booked.status_code == 201, booked.json()
    entry = record_entry_write(
        author=doctor, patient=patient, clinic=home, title=MARKER_TITLE, body=MARKER_BODY
    )
    admin, admin_token = staff_with_token(role=Role.CLINIC_ADMIN, clinic=home)
    auditor, auditor_token = staff_with_token(role=Role.AUDITOR)

    actors = {
        "owner": Actor("owner", patient, owner.raw),
        "other_patient": Actor("other_patient", other.user, other.raw),
        "own_clinic": Actor("own_clinic", doctor, doctor_token.raw, home.pk),
    }
    stranger, _ = practitioner("no_consent")
    actors["no_consent"] = stranger

    consented, clinic = practitioner("consent")
    consent = consent_grant(
        patient=patient,
        grantee_clinic_id=clinic.pk,
        source_clinic_id=None,
        categories=["diagnosis"],
        valid_until=None,
    )
    actors["consent"] = consented

    other_category, clinic = practitioner("consent_other_category")
    consent_grant(
        patient=patient,
        grantee_clinic_id=clinic.pk,
        source_clinic_id=None,
        categories=["allergy", "medication"],
        valid_until=None,
    )
    actors["consent_other_category"] = other_category

    revoked, clinic = practitioner("revoked_consent")
    withdrawn = consent_grant(
        patient=patient,
        grantee_clinic_id=clinic.pk,
        source_clinic_id=None,
        categories=["diagnosis"],
        valid_until=None,
    )
    consent_revoke(patient=patient, consent_id=withdrawn.pk)
    actors["revoked_consent"] = revoked

    expired, clinic = practitioner("expired_consent")
    with _in_the_past(days=10):  # granted ten days ago, valid until eight days ago
        consent_grant(
            patient=patient,
            grantee_clinic_id=clinic.pk,
            source_clinic_id=None,
            categories=["diagnosis"],
            valid_until=timezone.localdate() + datetime.timedelta(days=2),
        )
    actors["expired_consent"] = expired

    emergency, _ = practitioner("emergency")
    emergency_access_declare(
        actor=emergency.user, patient_id=patient.pk, justification=JUSTIFICATION
    )
    actors["emergency"] = emergency

    ended, _ = practitioner("expired_emergency")
    with _in_the_past(days=1):  # four hours long, declared yesterday
        emergency_access_declare(
            actor=ended.user, patient_id=patient.pk, justification=JUSTIFICATION
        )
    assert not EmergencyAccess.objects.get(practitioner=ended.user).expires_at > timezone.now()
    actors["expired_emergency"] = ended

    actors["clinic_admin"] = Actor("clinic_admin", admin, admin_token.raw, home.pk)
    actors["auditor"] = Actor("auditor", auditor, auditor_token.raw)
    actors["anonymous"] = Actor("anonymous", None, None)
    # Tokens made in real time: the ones made before a time travel would not be idle-expired,
    # but fresh ones keep the matrix independent of the idle timeout.
    for actor in actors.values():
        if actor.user is not None and actor.user.role != Role.PATIENT:
            actor.token = token_for(actor.user).raw

    return World(
        patient=patient,
        patient_token=owner.raw,
        home=home,
        doctor=doctor,
        entry=entry,
        appointment=Appointment.objects.get(pk=booked.json()["id"]),
        consent=consent,
        actors=actors,
        client=client,
    )


@pytest.fixture
def world(make_patient):
    return world_build(make_patient)
