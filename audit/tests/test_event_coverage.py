"""A6 and A7: every action the log knows leaves exactly the expected event (who, in which role,
what, about whom, where, from which address and request, with which outcome), through the HTTP
layer where there is an endpoint and through the service otherwise; and no name, date of birth,
reason for a visit or medical text of a patient ever reaches an audit row or the export."""

import base64
import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken, Role, User
from accounts.otp import otp_enrolment_confirm, otp_enrolment_start, otp_reset
from accounts.services import ClientInfo, token_revoke
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent, AuditTreeCheckpoint, Outcome
from audit.services import chain_verify, subject_pseudonym
from audit.tests.builders import (
    bearer,
    every_stored_value,
    head_seq,
    slot_make,
    staff_with_token,
    token_for,
)
from booking.models import Appointment, WaitlistOffer
from consent.models import EmergencyAccess
from vault import relatives
from vault.insurance import patient_insurance_update
from vault.models import PatientKey, PatientProfile
from vault.services import (
    master_key_retire,
    master_key_rotate,
    patient_erase,
    patient_key_rotate,
    patient_register,
    record_read,
)
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

REQUEST_ID = "coverage-request-0001"
ADDRESS = "203.0.113.9"
PASSWORD = "Lange-Reise-2026"


def master_key(version: int) -> str:
    return f"{version}:{base64.b64encode(os.urandom(32)).decode()}"


@dataclass
class Expected:
    """One expected row; `http` rows carry the request's id and client address."""

    action: str
    actor: User | None = None
    outcome: str = Outcome.SUCCESS
    object_type: str = ""
    object_id: object = ""
    subject: User | None = None
    clinic_id: int | None = None
    purpose: str = ""
    details: dict = field(default_factory=dict)
    http: bool = False

    def row(self) -> dict:
        return {
            "action": str(self.action),
            "actor_id": self.actor.pk if self.actor else None,
            "actor_role": self.actor.role if self.actor else "",
            "outcome": str(self.outcome),
            "object_type": self.object_type,
            "object_id": str(self.object_id),
            "subject_ref": subject_pseudonym(self.subject.pk) if self.subject else "",
            "clinic_id": self.clinic_id,
            "purpose": self.purpose,
            "details": self.details,
            "request_id": REQUEST_ID if self.http else "",
            "client_address": ADDRESS if self.http else None,
        }


COMPARED = list(Expected(action="").row())


class Scene:
    """What a case needs: an HTTP client that sends a request id from a fixed address, people,
    and `act`, which marks where the action under test begins and ends."""

    def __init__(self, settings, make_patient):
        self.settings = settings
        self.make_patient = make_patient
        self.client = Client(REMOTE_ADDR=ADDRESS, HTTP_X_REQUEST_ID=REQUEST_ID)
        self.started: int | None = None
        self.window: tuple[datetime.datetime, datetime.datetime] | None = None

    def act(self, action: Callable):
        assert self.started is None, "one action per case"
        self.started, begun = head_seq(), timezone.now()
        result = action()
        self.window = (begun, timezone.now())
        return result

    def get(self, url, token=None, **params):
        return self.client.get(url, params, **(bearer(token) if token else {}))

    def post(self, url, body=None, token=None):
        return self.client.post(
            url,
            data=json.dumps(body or {}),
            content_type="application/json",
            **(bearer(token) if token else {}),
        )

    def patient(self, **fields):
        return self.make_patient(**fields)

    def practice(self):
        """(clinic, practitioner) with a free slot ahead."""
        clinic = ClinicFactory()
        practitioner, _ = staff_with_token(role=Role.PRACTITIONER, clinic=clinic)
        return clinic, practitioner

    def booked(self, patient):
        """An appointment of `patient`, booked over HTTP, and its clinic and practitioner."""
        clinic, practitioner = self.practice()
        slot = slot_make(practitioner=practitioner, clinic=clinic)
        response = self.post("/api/appointments", {"slot_id": slot.public_id}, patient.raw)
        assert response.status_code == 201, response.json()
        return Appointment.objects.get(pk=response.json()["id"]), clinic, practitioner


# --- The cases: each sets up, acts once, and returns the rows it expects ---------------------


def register(scene):
    body = {
        "email": "new.patient@example.com",
        "password": PASSWORD,
        "first_name": "Nora",
        "last_name": "Neu",
        "date_of_birth": "1990-05-06",
    }
    response = scene.act(lambda: scene.post("/api/auth/register/patient", body))
    assert response.status_code == 201
    user = User.objects.get(email="new.patient@example.com")
    return [
        Expected(
            AuditAction.AUTH_REGISTER,
            user,
            object_type="user",
            object_id=user.pk,
            subject=user,
            http=True,
        )
    ]


def login_patient(scene):
    user = scene.patient(email="login@example.com").user
    response = scene.act(
        lambda: scene.post("/api/auth/login", {"email": "login@example.com", "password": PASSWORD})
    )
    assert response.status_code == 200
    token = ApiToken.objects.filter(user=user).latest("pk")
    return [
        Expected(
            AuditAction.AUTH_LOGIN,
            user,
            object_type="api_token",
            object_id=token.pk,
            subject=user,
            http=True,
        )
    ]


def login_staff(scene):
    """Staff are no data subjects: no pseudonym on their own logins."""
    _, practitioner = scene.practice()
    body = {"email": practitioner.email, "password": PASSWORD}
    response = scene.act(lambda: scene.post("/api/auth/login", body))
    assert response.status_code == 200
    token = ApiToken.objects.filter(user=practitioner).latest("pk")
    return [
        Expected(
            AuditAction.AUTH_LOGIN,
            practitioner,
            object_type="api_token",
            object_id=token.pk,
            http=True,
        )
    ]


def login_failed_known_account(scene):
    user = scene.patient(email="known@example.com").user
    body = {"email": "Known@Example.com", "password": "wrong-password"}
    response = scene.act(lambda: scene.post("/api/auth/login", body))
    assert response.status_code == 401
    return [
        Expected(
            AuditAction.AUTH_LOGIN_FAILED,
            None,
            Outcome.FAILURE,
            object_type="user",
            object_id=user.pk,
            subject=user,
            details={"reason": "invalid_credentials"},
            http=True,
        )
    ]


def login_failed_unknown_account(scene):
    body = {"email": "nobody@example.com", "password": "wrong-password"}
    response = scene.act(lambda: scene.post("/api/auth/login", body))
    assert response.status_code == 401
    return [
        Expected(
            AuditAction.AUTH_LOGIN_FAILED,
            None,
            Outcome.FAILURE,
            details={"reason": "invalid_credentials"},
            http=True,
        )
    ]


def logout(scene):
    issued = scene.patient()
    response = scene.act(lambda: scene.post("/api/auth/logout", token=issued.raw))
    assert response.status_code == 204
    return [
        Expected(
            AuditAction.AUTH_LOGOUT,
            issued.user,
            object_type="api_token",
            object_id=issued.token.pk,
            http=True,
        )
    ]


def token_revoked(scene):
    issued = scene.patient()
    scene.act(lambda: token_revoke(actor=issued.user, token=issued.token))
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    return [
        Expected(
            AuditAction.AUTH_TOKEN_REVOKE,
            issued.user,
            object_type="api_token",
            object_id=issued.token.pk,
        )
    ]


def record_read_own(scene):
    issued = scene.patient()
    clinic, practitioner = scene.practice()
    record_entry_write(author=practitioner, patient=issued.user, clinic=clinic)
    response = scene.act(lambda: scene.get("/api/patient/record", issued.raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.RECORD_READ,
            issued.user,
            object_type="patient_record",
            subject=issued.user,
            purpose="treatment",
            details={"bases": ["self"], "entries": 1, "hidden": 0},
            http=True,
        )
    ]


def record_read_by_the_authoring_clinic(scene):
    """A practitioner's read names the clinic they read for."""
    patient = scene.patient().user
    clinic, practitioner = scene.practice()
    record_entry_write(author=practitioner, patient=patient, clinic=clinic)
    read = scene.act(lambda: record_read(actor=practitioner, patient=patient))
    assert len(read.entries) == 1
    return [
        Expected(
            AuditAction.RECORD_READ,
            practitioner,
            object_type="patient_record",
            subject=patient,
            clinic_id=clinic.pk,
            purpose="treatment",
            details={"bases": ["own_clinic"], "entries": 1, "hidden": 0},
        )
    ]


def record_read_denied(scene):
    patient = scene.patient().user
    clinic, author = scene.practice()
    record_entry_write(author=author, patient=patient, clinic=clinic)
    strangers_clinic, stranger = scene.practice()
    read = scene.act(lambda: record_read(actor=stranger, patient=patient))
    assert (read.entries, read.hidden_count) == ([], 1)
    return [
        Expected(
            AuditAction.RECORD_READ,
            stranger,
            Outcome.DENIED,
            object_type="patient_record",
            subject=patient,
            clinic_id=strangers_clinic.pk,
            purpose="treatment",
            details={"bases": [], "entries": 0, "hidden": 1},
        )
    ]


def record_read_denied_to_an_auditor(scene):
    patient = scene.patient().user
    auditor, _ = staff_with_token(role=Role.AUDITOR)
    scene.act(lambda: record_read(actor=auditor, patient=patient))
    return [
        Expected(
            AuditAction.RECORD_READ,
            auditor,
            Outcome.DENIED,
            object_type="patient_record",
            subject=patient,
            purpose="treatment",
            details={"bases": [], "entries": 0, "hidden": 0},
        )
    ]


def record_write(scene):
    patient = scene.patient().user
    clinic, practitioner = scene.practice()
    entry = scene.act(
        lambda: record_entry_write(
            author=practitioner, patient=patient, clinic=clinic, category="medication"
        )
    )
    return [
        Expected(
            AuditAction.RECORD_WRITE,
            practitioner,
            object_type="record_entry",
            object_id=entry.pk,
            subject=patient,
            clinic_id=clinic.pk,
            purpose="treatment",
            details={"category": "medication"},
        )
    ]


def appointment_book(scene):
    issued = scene.patient()
    clinic, practitioner = scene.practice()
    slot = slot_make(practitioner=practitioner, clinic=clinic)
    response = scene.act(
        lambda: scene.post("/api/appointments", {"slot_id": slot.public_id}, issued.raw)
    )
    assert response.status_code == 201
    return [
        Expected(
            AuditAction.APPOINTMENT_BOOK,
            issued.user,
            object_type="appointment",
            object_id=response.json()["id"],
            subject=issued.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id},
            http=True,
        )
    ]


def appointment_cancel_by_the_patient(scene):
    issued = scene.patient()
    appointment, clinic, _ = scene.booked(issued)
    url = f"/api/appointments/{appointment.pk}/cancel"
    response = scene.act(lambda: scene.post(url, token=issued.raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.APPOINTMENT_CANCEL,
            issued.user,
            object_type="appointment",
            object_id=appointment.pk,
            subject=issued.user,
            clinic_id=clinic.pk,
            details={"by": "patient"},
            http=True,
        )
    ]


def appointment_cancel_by_the_clinic(scene):
    issued = scene.patient()
    appointment, clinic, practitioner = scene.booked(issued)
    url = f"/api/appointments/{appointment.pk}/cancel"
    response = scene.act(lambda: scene.post(url, token=token_for(practitioner).raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.APPOINTMENT_CANCEL,
            practitioner,
            object_type="appointment",
            object_id=appointment.pk,
            subject=issued.user,
            clinic_id=clinic.pk,
            details={"by": "clinic"},
            http=True,
        )
    ]


def appointment_move(scene):
    issued = scene.patient()
    appointment, clinic, practitioner = scene.booked(issued)
    old_slot = appointment.slot
    new_slot = slot_make(practitioner=practitioner, clinic=clinic, days=4)
    url = f"/api/appointments/{appointment.pk}/move"
    response = scene.act(lambda: scene.post(url, {"slot_id": new_slot.public_id}, issued.raw))
    assert response.status_code == 200, response.json()
    return [
        Expected(
            AuditAction.APPOINTMENT_MOVE,
            issued.user,
            object_type="appointment",
            object_id=appointment.pk,
            subject=issued.user,
            clinic_id=clinic.pk,
            details={
                "from_slot": old_slot.public_id,
                "slot": new_slot.public_id,
                "slots": 1,
                "by": "patient",
            },
            http=True,
        )
    ]


def schedule_read(scene):
    """One row per patient whose booking snapshot is shown."""
    clinic, practitioner = scene.practice()
    patients = [scene.patient().user, scene.patient().user]
    for hour, patient in enumerate(patients):
        slot = slot_make(practitioner=practitioner, clinic=clinic, days=2, hour=hour)
        token = token_for(patient).raw
        booked = scene.post("/api/appointments", {"slot_id": slot.public_id}, token)
        assert booked.status_code == 201
    today = timezone.localdate()
    params = {"date_from": today.isoformat(), "date_to": (today + datetime.timedelta(days=6))}
    response = scene.act(
        lambda: scene.get("/api/medical/schedule", token_for(practitioner).raw, **params)
    )
    assert response.status_code == 200
    assert len(response.json()) == 2
    return [
        Expected(
            AuditAction.SCHEDULE_READ,
            practitioner,
            object_type="booking_snapshot",
            subject=patient,
            clinic_id=clinic.pk,
            purpose="treatment",
            http=True,
        )
        for patient in sorted(patients, key=lambda patient: patient.pk)
    ]


def consent_grant(scene):
    issued = scene.patient()
    clinic = ClinicFactory()
    source = ClinicFactory()
    body = {
        "grantee_clinic": clinic.pk,
        "source_clinic": source.pk,
        "categories": ["medication", "allergy"],
        "valid_until": "2099-12-31",
    }
    response = scene.act(lambda: scene.post("/api/patient/consents", body, issued.raw))
    assert response.status_code == 201, response.json()
    return [
        Expected(
            AuditAction.CONSENT_GRANT,
            issued.user,
            object_type="consent",
            object_id=response.json()["id"],
            subject=issued.user,
            clinic_id=clinic.pk,
            purpose="treatment",
            details={
                "categories": ["allergy", "medication"],
                "source_clinic": source.pk,
                "valid_until": "2099-12-31",
            },
            http=True,
        )
    ]


def consent_revoke(scene):
    issued = scene.patient()
    clinic = ClinicFactory()
    body = {"grantee_clinic": clinic.pk, "categories": ["diagnosis"]}
    granted = scene.post("/api/patient/consents", body, issued.raw)
    assert granted.status_code == 201, granted.json()
    url = f"/api/patient/consents/{granted.json()['id']}/revoke"
    response = scene.act(lambda: scene.post(url, token=issued.raw))
    assert response.status_code == 200, response.json()
    return [
        Expected(
            AuditAction.CONSENT_REVOKE,
            issued.user,
            object_type="consent",
            object_id=granted.json()["id"],
            subject=issued.user,
            clinic_id=clinic.pk,
            purpose="treatment",
            http=True,
        )
    ]


def emergency_declare(scene):
    """The row names clinic and end, never the justification (it may name a condition)."""
    patient = scene.patient().user
    clinic, practitioner = scene.practice()
    url = f"/api/medical/patients/{patient.pk}/emergency-access"
    body = {"justification": "Bewusstlos eingeliefert, Medikation unbekannt."}
    response = scene.act(lambda: scene.post(url, body, token_for(practitioner).raw))
    assert response.status_code == 201, response.json()
    access = EmergencyAccess.objects.get(pk=response.json()["id"])
    return [
        Expected(
            AuditAction.EMERGENCY_DECLARE,
            practitioner,
            object_type="emergency_access",
            object_id=access.pk,
            subject=patient,
            clinic_id=clinic.pk,
            purpose="treatment",
            details={"expires_at": access.expires_at.isoformat()},
            http=True,
        )
    ]


def erasure_request(scene):
    """A patient asks for erasure (no future appointments here: only the request's row)."""
    issued = scene.patient()
    response = scene.act(lambda: scene.post("/api/patient/erasure-request", token=issued.raw))
    assert response.status_code == 202, response.json()
    return [
        Expected(
            AuditAction.ERASURE_REQUEST,
            issued.user,
            object_type="erasure_request",
            object_id=response.json()["id"],
            subject=issued.user,
            details={"retain_until": response.json()["retain_until"]},
            http=True,
        )
    ]


def slots_create(scene):
    clinic, practitioner = scene.practice()
    admin, token = staff_with_token(role=Role.CLINIC_ADMIN, clinic=clinic)
    starts_at = (timezone.now() + datetime.timedelta(days=5)).replace(microsecond=0)
    body = {
        "clinic": clinic.pk,
        "practitioner": practitioner.pk,
        "specialty": "allgemeinmedizin",
        "starts_at": starts_at.isoformat(),
        "ends_at": (starts_at + datetime.timedelta(minutes=20)).isoformat(),
    }
    slot_make(practitioner=practitioner, clinic=clinic, days=9)  # the specialty exists
    response = scene.act(lambda: scene.post("/api/medical/slots", body, token.raw))
    assert response.status_code == 201, response.json()
    return [
        Expected(
            AuditAction.SLOTS_CREATE,
            admin,
            clinic_id=clinic.pk,
            details={"count": 1, "practitioner": practitioner.pk},
            http=True,
        )
    ]


def master_key_rotation(scene):
    old, new = master_key(1), master_key(2)
    scene.settings.PATTERM_MASTER_KEYS = old
    for _ in range(3):
        scene.patient()
    scene.settings.PATTERM_MASTER_KEYS = f"{new},{old}"
    keys = list(PatientKey.objects.order_by("pk").values_list("pk", flat=True))
    assert len(keys) == 3
    scene.act(lambda: master_key_rotate(batch_size=2))
    return [
        Expected(AuditAction.KEY_ROTATION_START, details={"target_version": 2, "pending": 3}),
        Expected(
            AuditAction.KEY_ROTATION_BATCH,
            details={"target_version": 2, "count": 2, "first_key": keys[0], "last_key": keys[1]},
        ),
        Expected(
            AuditAction.KEY_ROTATION_BATCH,
            details={"target_version": 2, "count": 1, "first_key": keys[2], "last_key": keys[2]},
        ),
        Expected(AuditAction.KEY_ROTATION_FINISH, details={"target_version": 2, "rewrapped": 3}),
    ]


def master_key_retired(scene):
    old, new = master_key(1), master_key(2)
    scene.settings.PATTERM_MASTER_KEYS = old
    scene.patient()
    scene.settings.PATTERM_MASTER_KEYS = f"{new},{old}"
    master_key_rotate()
    operator = User.objects.create_superuser("operator@example.com", PASSWORD)
    scene.act(lambda: master_key_retire(version=1, actor=operator))
    return [Expected(AuditAction.KEY_MASTER_RETIRE, operator, details={"version": 1})]


def patient_key_rotated(scene):
    patient = scene.patient().user
    clinic, practitioner = scene.practice()
    record_entry_write(author=practitioner, patient=patient, clinic=clinic)
    old_key = PatientKey.objects.get(patient=patient)
    rows = scene.act(lambda: patient_key_rotate(patient=patient))
    new_key = PatientKey.objects.get(patient=patient, destroyed_at=None)
    assert rows == 2  # the profile and the entry
    return [
        Expected(
            AuditAction.KEY_PATIENT_ROTATE,
            object_type="patient_key",
            object_id=new_key.pk,
            subject=patient,
            details={"rows": 2, "old_key": old_key.pk},
        )
    ]


def erasure(scene):
    patient = scene.patient().user
    assert scene.act(lambda: patient_erase(patient=patient))
    return [
        Expected(
            AuditAction.ERASURE_COMPLETE,
            object_type="user",
            object_id=patient.pk,
            subject=patient,
            details={"keys_destroyed": 1},
        )
    ]


def audit_verify(scene):
    scene.patient()
    auditor, token = staff_with_token(role=Role.AUDITOR)
    response = scene.act(lambda: scene.get("/api/audit/verify", token.raw))
    assert response.json()["ok"]
    return [
        Expected(
            AuditAction.AUDIT_VERIFY,
            auditor,
            details={
                "from_leaf": 0,
                "events_checked": 0,  # staged, not yet leaves: test transactions run no hooks
                "checkpoints_checked": 0,
                "first_broken_seq": None,
                "first_broken_leaf": None,
            },
            http=True,
        )
    ]


def audit_verify_by_command(scene):
    scene.patient()
    scene.act(lambda: call_command("verify_audit", stdout=StringIO(), stderr=StringIO()))
    return [
        Expected(
            AuditAction.AUDIT_VERIFY,
            details={
                "from_leaf": 0,
                "events_checked": 0,  # staged, not yet leaves: test transactions run no hooks
                "checkpoints_checked": 0,
                "first_broken_seq": None,
                "first_broken_leaf": None,
            },
        )
    ]


def audit_export(scene, tmp_path):
    scene.patient()
    head = AuditEvent.objects.count()  # every event becomes a leaf first
    path = tmp_path / "export.jsonl"
    scene.act(lambda: call_command("export_audit", str(path), stdout=StringIO()))
    assert AuditTreeCheckpoint.objects.filter(tree_size=head).exists()
    return [Expected(AuditAction.AUDIT_EXPORT, details={"events": head})]


def audit_read(scene):
    scene.patient()
    auditor, token = staff_with_token(role=Role.AUDITOR)
    response = scene.act(
        lambda: scene.get("/api/audit/events", token.raw, action="auth.register", limit=5)
    )
    assert response.json()["count"] == 1
    return [
        Expected(AuditAction.AUDIT_READ, auditor, details={"action": "auth.register"}, http=True)
    ]


def admin_change(scene):
    clinic = ClinicFactory(city="Berlin")
    operator = User.objects.create_superuser("operator@example.com", PASSWORD)
    scene.client.force_login(operator)
    body = {
        "name": clinic.name,
        "slug": clinic.slug,
        "city": "Potsdam",
        "address": clinic.address,
        "cancellation_cutoff_hours": 24,
    }
    url = f"/admin/accounts/clinic/{clinic.pk}/change/"
    response = scene.act(lambda: scene.client.post(url, body))
    assert response.status_code == 302
    return [
        Expected(
            AuditAction.ADMIN_CHANGE,
            operator,
            object_type="accounts.clinic",
            object_id=clinic.pk,
            details={"change": "change", "fields": ["City"]},
            http=True,
        )
    ]


def _waiting(scene, clinic, practitioner):
    """A slot booked by one patient and another patient on the waitlist for it."""
    owner, waiting = scene.patient(), scene.patient()
    slot = slot_make(practitioner=practitioner, clinic=clinic)
    booked = scene.post("/api/appointments", {"slot_id": slot.public_id}, owner.raw)
    joined = scene.post("/api/waitlist", {"specialty": "allgemeinmedizin"}, waiting.raw)
    assert (booked.status_code, joined.status_code) == (201, 201)
    return owner, waiting, slot, booked.json()["id"]


def _offered(scene):
    clinic, practitioner = scene.practice()
    owner, waiting, slot, appointment_id = _waiting(scene, clinic, practitioner)
    cancelled = scene.post(f"/api/appointments/{appointment_id}/cancel", token=owner.raw)
    assert cancelled.status_code == 200
    return waiting, slot, WaitlistOffer.objects.get(status="open"), clinic


def waitlist_join(scene):
    issued = scene.patient()
    slot_make(practitioner=scene.practice()[1], clinic=ClinicFactory())  # the specialty
    body = {"specialty": "allgemeinmedizin", "city": "Berlin"}
    response = scene.act(lambda: scene.post("/api/waitlist", body, issued.raw))
    assert response.status_code == 201
    return [
        Expected(
            AuditAction.WAITLIST_JOIN,
            issued.user,
            object_type="waitlist_entry",
            object_id=response.json()["id"],
            subject=issued.user,
            http=True,
        )
    ]


def waitlist_leave(scene):
    issued = scene.patient()
    slot_make(practitioner=scene.practice()[1], clinic=ClinicFactory())
    entry = scene.post("/api/waitlist", {"specialty": "allgemeinmedizin"}, issued.raw).json()
    url = f"/api/waitlist/{entry['id']}"
    response = scene.act(lambda: scene.client.delete(url, **bearer(issued.raw)))
    assert response.status_code == 204
    return [
        Expected(
            AuditAction.WAITLIST_LEAVE,
            issued.user,
            object_type="waitlist_entry",
            object_id=entry["id"],
            subject=issued.user,
            details={"by": "patient"},
            http=True,
        )
    ]


def waitlist_offer_on_cancellation(scene):
    """The cancellation's own row, then the offer the system makes in the same request."""
    clinic, practitioner = scene.practice()
    owner, waiting, slot, appointment_id = _waiting(scene, clinic, practitioner)
    url = f"/api/appointments/{appointment_id}/cancel"
    response = scene.act(lambda: scene.post(url, token=owner.raw))
    assert response.status_code == 200
    offer = WaitlistOffer.objects.get()
    return [
        Expected(
            AuditAction.APPOINTMENT_CANCEL,
            owner.user,
            object_type="appointment",
            object_id=appointment_id,
            subject=owner.user,
            clinic_id=clinic.pk,
            details={"by": "patient"},
            http=True,
        ),
        Expected(
            AuditAction.WAITLIST_OFFER,
            object_type="waitlist_offer",
            object_id=offer.pk,
            subject=waiting.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id, "cause": "cancellation"},
            http=True,
        ),
    ]


def waitlist_offer_confirm(scene):
    waiting, slot, offer, clinic = _offered(scene)
    url = f"/api/waitlist/offers/{offer.pk}/confirm"
    response = scene.act(lambda: scene.post(url, token=waiting.raw))
    assert response.status_code == 201
    appointment_id = response.json()["id"]
    return [
        Expected(
            AuditAction.WAITLIST_OFFER_CONFIRM,
            waiting.user,
            object_type="waitlist_offer",
            object_id=offer.pk,
            subject=waiting.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id, "appointment": appointment_id},
            http=True,
        ),
        Expected(
            AuditAction.APPOINTMENT_BOOK,
            waiting.user,
            object_type="appointment",
            object_id=appointment_id,
            subject=waiting.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id},
            http=True,
        ),
    ]


def waitlist_offer_decline(scene):
    waiting, slot, offer, clinic = _offered(scene)
    url = f"/api/waitlist/offers/{offer.pk}/decline"
    response = scene.act(lambda: scene.post(url, token=waiting.raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.WAITLIST_OFFER_DECLINE,
            waiting.user,
            object_type="waitlist_offer",
            object_id=offer.pk,
            subject=waiting.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id, "by": "patient"},
            http=True,
        )
    ]


def waitlist_offer_expire(scene):
    waiting, slot, offer, clinic = _offered(scene)
    with time_machine.travel(offer.expires_at, tick=False):
        scene.act(lambda: call_command("process_waitlist", stdout=StringIO()))
    return [
        Expected(
            AuditAction.WAITLIST_OFFER_EXPIRE,
            object_type="waitlist_offer",
            object_id=offer.pk,
            subject=waiting.user,
            clinic_id=clinic.pk,
            details={"slot": slot.public_id},
        )
    ]


def reminder_send(scene):
    issued = scene.patient()
    appointment, clinic, _ = scene.booked(issued)
    with time_machine.travel(appointment.starts_at - datetime.timedelta(hours=47), tick=False):
        scene.act(lambda: call_command("send_reminders", stdout=StringIO()))
    return [
        Expected(
            AuditAction.REMINDER_SEND,
            object_type="appointment",
            object_id=appointment.pk,
            subject=issued.user,
            clinic_id=clinic.pk,
            details={"hours_before": 48},
        )
    ]


def session_ended(scene):
    issued = scene.patient()
    other = token_for(issued.user)
    url = f"/api/auth/sessions/token-{other.token.pk}"
    response = scene.act(
        lambda: scene.client.delete(url, HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    )
    assert response.status_code == 204
    return [
        Expected(
            AuditAction.AUTH_SESSION_END,
            issued.user,
            object_type="api_token",
            object_id=other.token.pk,
            http=True,
        )
    ]


def logout_all(scene):
    issued = scene.patient()
    response = scene.act(lambda: scene.post("/api/auth/logout-all", token=issued.raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.AUTH_LOGOUT_ALL,
            issued.user,
            object_type="user",
            object_id=issued.user.pk,
            subject=issued.user,
            details={"reason": "logout_all", "api_tokens": 1, "browser_sessions": 0},
            http=True,
        )
    ]


def password_change(scene):
    issued = scene.patient()
    body = {"current_password": PASSWORD, "new_password": "Neue-Brücke-über-den-Fluss"}
    response = scene.act(lambda: scene.post("/api/auth/password", body, issued.raw))
    assert response.status_code == 204
    return [
        Expected(
            AuditAction.AUTH_PASSWORD_CHANGE,
            issued.user,
            object_type="user",
            object_id=issued.user.pk,
            subject=issued.user,
            details={"via": "change"},
            http=True,
        )
    ]


def _totp_code(device) -> str:
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():06d}"


def otp_confirm(scene):
    staff, issued = staff_with_token(role=Role.PRACTITIONER)
    assert scene.post("/api/auth/otp/enrolment", token=issued.raw).status_code == 201
    device = TOTPDevice.objects.get(user=staff)
    body = {"otp": _totp_code(device)}
    response = scene.act(lambda: scene.post("/api/auth/otp/confirm", body, issued.raw))
    assert response.status_code == 200
    return [
        Expected(
            AuditAction.AUTH_OTP_CONFIRM,
            staff,
            object_type="otp_device",
            object_id=device.pk,
            details={"replaced": 0},
            http=True,
        )
    ]


def otp_reset_by_an_operator(scene):
    staff, _ = staff_with_token(role=Role.AUDITOR)
    device = otp_enrolment_start(user=staff, verified=False).device
    otp_enrolment_confirm(user=staff, code=_totp_code(device), verified=False)
    scene.act(lambda: otp_reset(user=staff, actor=None))
    return [
        Expected(AuditAction.AUTH_OTP_RESET, None, object_type="user", object_id=staff.pk),
        Expected(
            AuditAction.AUTH_LOGOUT_ALL,
            None,
            object_type="user",
            object_id=staff.pk,
            details={"reason": "otp_reset", "api_tokens": 1, "browser_sessions": 0},
        ),
    ]


def _teen(scene):
    """(holder's IssuedToken, a relative of 16 the holder manages)."""
    scene.settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE = 15
    holder = scene.patient()
    today = timezone.localdate()
    teen = relatives.relative_add(
        holder=holder.user,
        first_name=MARKERS["first_name"],
        last_name=MARKERS["last_name"],
        date_of_birth=today.replace(year=today.year - 16),
    )
    return holder, teen


def relative_invite(scene):
    """The invited address (a new login) stays out of the row."""
    holder, teen = _teen(scene)
    url = f"/api/relatives/{teen.id}/invitation"
    response = scene.act(lambda: scene.post(url, {"email": MARKERS["email"]}, holder.raw))
    assert response.status_code == 202, response.json()
    return [
        Expected(
            AuditAction.RELATIVE_INVITE,
            holder.user,
            object_type="relative_link",
            object_id=teen.link.pk,
            subject=teen.user,
            details={"bases": ["holder"]},
            http=True,
        )
    ]


def relative_takeover(scene):
    holder, teen = _teen(scene)
    invited = relatives.relative_invite(
        holder=holder.user, relative_id=teen.id, email=MARKERS["email"]
    )
    url = f"/relatives/takeover/{relatives.invitation_token(invited.link)}/"
    body = {"password": PASSWORD, "password_repeat": PASSWORD}
    response = scene.act(lambda: scene.client.post(url, body))
    assert response.status_code == 302, response.content
    teen.user.refresh_from_db()
    return [
        Expected(
            AuditAction.RELATIVE_TAKEOVER,
            teen.user,
            object_type="relative_link",
            object_id=teen.link.pk,
            subject=teen.user,
            details={"former_holder": holder.user.pk},
            http=True,
        ),
        Expected(
            AuditAction.AUTH_LOGIN,
            teen.user,
            object_type="session",
            object_id="",
            subject=teen.user,
            http=True,
        ),
    ]


INSURANCE = {
    "insurance_type": "gesetzlich",
    "insurer_name": "Zqxkassenmarker BKK",
    "insurance_number": "A123456780",
}


def insurance_change_by_api(scene):
    """Which fields changed, never the KVNR or the insurer's name."""
    issued = scene.patient()
    profile = PatientProfile.objects.get(patient=issued.user)
    response = scene.act(
        lambda: scene.client.put(
            "/api/patient/insurance",
            data=json.dumps(INSURANCE),
            content_type="application/json",
            **bearer(issued.raw),
        )
    )
    assert response.status_code == 200, response.json()
    return [
        Expected(
            AuditAction.INSURANCE_CHANGE,
            issued.user,
            object_type="patient_profile",
            object_id=profile.pk,
            subject=issued.user,
            details={"fields": ["insurance_type", "insurer_name", "insurance_number"]},
            http=True,
        )
    ]


def insurance_change_on_the_page(scene):
    issued = scene.patient()
    profile = PatientProfile.objects.get(patient=issued.user)
    insurance_update = INSURANCE | {"insurer_name": ""}
    patient_insurance_update(patient=issued.user, **INSURANCE)
    scene.client.force_login(issued.user)
    response = scene.act(lambda: scene.client.post("/insurance/", insurance_update))
    assert response.status_code == 302, response.content
    return [
        Expected(
            AuditAction.INSURANCE_CHANGE,
            issued.user,
            object_type="patient_profile",
            object_id=profile.pk,
            subject=issued.user,
            details={"fields": ["insurer_name"]},
            http=True,
        )
    ]


CASES = [
    register,
    login_patient,
    login_staff,
    login_failed_known_account,
    login_failed_unknown_account,
    logout,
    token_revoked,
    record_read_own,
    record_read_by_the_authoring_clinic,
    record_read_denied,
    record_read_denied_to_an_auditor,
    record_write,
    appointment_book,
    appointment_cancel_by_the_patient,
    appointment_cancel_by_the_clinic,
    appointment_move,
    schedule_read,
    slots_create,
    consent_grant,
    consent_revoke,
    emergency_declare,
    erasure_request,
    master_key_rotation,
    master_key_retired,
    patient_key_rotated,
    erasure,
    audit_verify,
    audit_verify_by_command,
    audit_export,
    audit_read,
    admin_change,
    waitlist_join,
    waitlist_leave,
    waitlist_offer_on_cancellation,
    waitlist_offer_confirm,
    waitlist_offer_decline,
    waitlist_offer_expire,
    reminder_send,
    session_ended,
    logout_all,
    password_change,
    otp_confirm,
    otp_reset_by_an_operator,
    relative_invite,
    relative_takeover,
    insurance_change_by_api,
    insurance_change_on_the_page,
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_a6_each_action_leaves_exactly_the_expected_event(settings, make_patient, tmp_path, case):
    scene = Scene(settings, make_patient)

    expected = case(scene, tmp_path) if case is audit_export else case(scene)

    rows = list(AuditEvent.objects.filter(seq__gt=scene.started).order_by("seq").values(*COMPARED))
    for row in rows:
        row["client_address"] = row["client_address"] or None
    assert rows == [item.row() for item in expected]
    begun, ended = scene.window
    times = AuditEvent.objects.filter(seq__gt=scene.started).values_list("occurred_at", flat=True)
    assert all(begun <= moment <= ended for moment in times)
    assert chain_verify().ok  # each row hashes as it is stored


def test_a6_every_action_of_the_vocabulary_is_covered():
    """A new AuditAction needs a case above."""
    covered = {
        "auth.register",
        "auth.login",
        "auth.login_failed",
        "auth.logout",
        "auth.token_revoke",
        "record.read",
        "record.write",
        "appointment.book",
        "appointment.cancel",
        "appointment.move",
        "appointment.schedule_read",
        "slot.create",
        "key.rotation_start",
        "key.rotation_batch",
        "key.rotation_finish",
        "key.master_retire",
        "key.patient_rotate",
        "erasure.complete",
        "audit.verify",
        "audit.export",
        "audit.read",
        "admin.change",
        "consent.grant",
        "consent.revoke",
        "emergency.declare",
        "erasure.request",
        "reminder.send",
        "waitlist.join",
        "waitlist.leave",
        "waitlist.offer",
        "waitlist.offer_confirm",
        "waitlist.offer_decline",
        "waitlist.offer_expire",
        "auth.session_end",
        "auth.logout_all",
        "auth.password_change",
        "auth.otp_confirm",
        "auth.otp_reset",
        "relative.invite",
        "relative.takeover",
        "insurance.change",
    }
    assert set(AuditAction.values) == covered


# --- A7: no personal or medical value in the log ----------------------------------------------

MARKERS = {
    "first_name": "Zqxvornamemarker",
    "last_name": "Zqxnachnamemarker",
    "reason": "Zqxgrundmarker Brustschmerzen",
    "title": "Zqxtitelmarker Diagnose",
    "body": "Zqxbefundmarker Blutdruck 180/110",
    "email": "zqxmailmarker@example.com",
    "unknown_email": "zqxunbekanntmarker@example.com",
    "new_last_name": "Zqxadminmarker",
    "insurer": "Zqxkassenmarker BKK",
    "kvnr": "A123456780",
    "invited_email": "zqxeinladungmarker@example.com",
}
BIRTH_DATE = datetime.date(1961, 7, 23)


def forbidden_texts() -> list[str]:
    texts = [marker.lower() for marker in MARKERS.values()]
    texts += [marker.split()[0].lower() for marker in MARKERS.values()]
    texts += [
        BIRTH_DATE.isoformat(),
        BIRTH_DATE.strftime("%d.%m.%Y"),
        BIRTH_DATE.strftime("%Y%m%d"),
        "zqxmailmarker",
    ]
    return texts


def test_a7_marker_strings_never_reach_the_audit_log_or_the_export(
    settings, make_patient, tmp_path
):
    settings.PATTERM_AUDIT_CHECKPOINT_EVERY = 7
    scene = Scene(settings, make_patient)
    register = {
        "email": MARKERS["email"],
        "password": PASSWORD,
        "first_name": MARKERS["first_name"],
        "last_name": MARKERS["last_name"],
        "date_of_birth": BIRTH_DATE.isoformat(),
    }
    assert scene.post("/api/auth/register/patient", register).status_code == 201
    login = scene.post("/api/auth/login", {"email": MARKERS["email"], "password": PASSWORD})
    token = login.json()["token"]
    patient = User.objects.get(email=MARKERS["email"])
    wrong = {"email": MARKERS["email"], "password": MARKERS["reason"]}
    assert scene.post("/api/auth/login", wrong).status_code == 401
    unknown = {"email": MARKERS["unknown_email"], "password": MARKERS["title"]}
    assert scene.post("/api/auth/login", unknown).status_code == 401

    clinic, practitioner = scene.practice()
    slot = slot_make(practitioner=practitioner, clinic=clinic)
    booking = {"slot_id": slot.public_id, "reason": MARKERS["reason"]}
    booked = scene.post("/api/appointments", booking, token)
    assert booked.status_code == 201
    record_entry_write(
        author=practitioner,
        patient=patient,
        clinic=clinic,
        title=MARKERS["title"],
        body=MARKERS["body"],
    )
    practitioner_token = token_for(practitioner).raw
    schedule = scene.get("/api/medical/schedule", practitioner_token)
    assert MARKERS["last_name"] in schedule.content.decode()  # shown to staff, not logged
    record = scene.get("/api/patient/record", token)
    assert MARKERS["body"] in record.content.decode()
    record_read(actor=practitioner, patient=patient)
    waiting = {"specialty": "allgemeinmedizin", "city": clinic.city}
    entry = scene.post("/api/waitlist", waiting, token)
    assert entry.status_code == 201
    reminder_at = slot.starts_at - datetime.timedelta(hours=47)
    with time_machine.travel(reminder_at, tick=False):
        out = StringIO()
        call_command("send_reminders", stdout=out)
        assert "1 reminders sent" in out.getvalue()
    left = scene.client.delete(f"/api/waitlist/{entry.json()['id']}", **bearer(token))
    assert left.status_code == 204
    cancel = scene.post(f"/api/appointments/{booked.json()['id']}/cancel", token=token)
    assert cancel.status_code == 200
    patient_key_rotate(patient=patient)
    insurance = {
        "insurance_type": "gesetzlich",
        "insurer_name": MARKERS["insurer"],
        "insurance_number": MARKERS["kvnr"],
    }
    changed = scene.client.put(
        "/api/patient/insurance",
        data=json.dumps(insurance),
        content_type="application/json",
        **bearer(token),
    )
    assert changed.status_code == 200
    settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE = 15
    today = timezone.localdate()
    teen = relatives.relative_add(
        holder=patient,
        first_name=MARKERS["first_name"],
        last_name=MARKERS["last_name"],
        date_of_birth=today.replace(year=today.year - 16),
    )
    invited = scene.post(
        f"/api/relatives/{teen.id}/invitation", {"email": MARKERS["invited_email"]}, token
    )
    assert invited.status_code == 202

    operator = User.objects.create_superuser("operator@example.com", PASSWORD)
    scene.client.force_login(operator)
    change = {
        "name": clinic.name,
        "slug": clinic.slug,
        "city": MARKERS["new_last_name"],
        "address": clinic.address,
        "cancellation_cutoff_hours": 24,
    }
    assert scene.client.post(f"/admin/accounts/clinic/{clinic.pk}/change/", change).status_code
    _, auditor_token = staff_with_token(role=Role.AUDITOR)
    verified = scene.get("/api/audit/verify", auditor_token.raw).json()
    assert verified["ok"]
    assert scene.get("/api/audit/events", auditor_token.raw).status_code == 200
    path = tmp_path / "evidence.jsonl"
    call_command("export_audit", str(path), stdout=StringIO())
    second = patient_register(
        email="second@example.com",
        password=PASSWORD,
        first_name=MARKERS["first_name"],
        last_name=MARKERS["last_name"],
        date_of_birth=BIRTH_DATE,
        client=ClientInfo(address=ADDRESS),
    )
    patient_erase(patient=second.user)

    assert AuditEvent.objects.count() >= 15
    assert AuditTreeCheckpoint.objects.exists()
    stored = every_stored_value().lower()
    exported = path.read_text(encoding="utf-8").lower()
    assert len(exported.splitlines()) >= 15
    for text in forbidden_texts():
        assert text not in stored, text
        assert text not in exported, text
