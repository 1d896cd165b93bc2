"""The vault part of the JSON API: a patient's own record."""

from typing import Literal

from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from ninja import Router, Status
from ninja.pagination import paginate

from accounts.auth import BearerTokenAuth
from accounts.models import Role
from accounts.services import user_has_login
from audit.selectors import events_about
from booking.api import appointment_out
from booking.schemas import AppointmentOut
from booking.services import appointments_visible_to, erasure_request
from consent.api import access_log_rows
from consent.schemas import ConsentOut
from consent.services import consents_of
from patterm.numbers import Id, ascii_int
from patterm.pagination import Pagination, RenderedPage
from vault import services
from vault.fhir import FHIR_JSON, export_bundle
from vault.keys import data_keys_preload
from vault.models import RecordEntry
from vault.schemas import (
    EmergencyIn,
    EmergencyOut,
    EmergencyReviewOut,
    EntryIn,
    PatientRecordOut,
    PractitionerRecordOut,
    RecordEntryOut,
)

router = Router(tags=["record"])

MESSAGE_PRACTITIONERS_ONLY = services.MESSAGE_PRACTITIONERS_ONLY
MESSAGE_CLINIC_ADMINS_ONLY = _("Only clinic admins review emergency accesses.")
MESSAGE_PATIENTS_ONLY = _("Only patients read their own record.")


def _record_read_refused(request) -> None:
    patient_id = ascii_int(request.resolver_match.kwargs.get("patient_id", ""))
    services.record_read_refusal_audit(actor=request.user, patient_id=patient_id)


# Who may call what, checked before the path, query or body is read (accounts/auth.py).
PATIENTS = BearerTokenAuth(Role.PATIENT, message=MESSAGE_PATIENTS_ONLY, code="not_a_patient")
PRACTITIONERS = BearerTokenAuth(
    Role.PRACTITIONER, message=MESSAGE_PRACTITIONERS_ONLY, code="not_a_practitioner"
)
PRACTITIONERS_AUDITED = BearerTokenAuth(
    Role.PRACTITIONER,
    message=MESSAGE_PRACTITIONERS_ONLY,
    code="not_a_practitioner",
    on_refused=_record_read_refused,
)
CLINIC_ADMINS = BearerTokenAuth(
    Role.CLINIC_ADMIN, message=MESSAGE_CLINIC_ADMINS_ONLY, code="not_a_clinic_admin"
)
MESSAGE_ERASURE_FILED = _(
    "Your account is closed. Your medical records are kept until the legal retention period "
    "ends, then erased; appointments, consents and the access log go with them."
)


def record_entry_out(entry: RecordEntry) -> dict:
    author = entry.author
    return {
        "id": entry.pk,
        "category": entry.category,
        "title": entry.title,
        "body": entry.body,
        "code": entry.code,
        "clinic": {"id": entry.clinic_id, "name": entry.clinic.name},
        "author": {"id": author.pk, "name": f"{author.first_name} {author.last_name}".strip()},
        "created_at": entry.created_at,
        "basis": entry.basis,
    }


def _profile_out(user, profile) -> dict:
    return {
        "id": user.pk,
        "email": user.email if user_has_login(user) else "",  # a relative has none
        "first_name": profile.first_name if profile else "",
        "last_name": profile.last_name if profile else "",
        "date_of_birth": profile.date_of_birth if profile else "",
    }


@router.get("/patient/record", response=PatientRecordOut, exclude_unset=True, auth=PATIENTS)
def patient_record(request):
    """The patient's own profile, appointments and every entry of their record, decrypted
    (`basis: self`)."""
    profile, record = services.own_record_read(patient=request.user)
    return {
        "profile": _profile_out(request.user, profile),
        "appointments": [
            appointment_out(appointment, viewer=request.user, staff_clinics=frozenset())
            for appointment in appointments_visible_to(request.user).order_by("-starts_at")
        ],
        "entries": [record_entry_out(entry) for entry in record.entries],
        "hidden_count": record.hidden_count,
    }


# --- Practitioners --------------------------------------------------------------------------


@router.get(
    "/medical/patients/{patient_id}/record",
    response=PractitionerRecordOut,
    auth=PRACTITIONERS_AUDITED,
)
def practitioner_record(request, patient_id: Id):
    """The entries the practitioner's clinic may see, each with its legal basis, and how many
    stayed hidden. A patient without any basis for this practitioner answers 404."""
    patient, record = services.practitioner_record_read(actor=request.user, patient_id=patient_id)
    return {
        "patient": {"id": patient.pk},
        "entries": [record_entry_out(entry) for entry in record.entries],
        "hidden_count": record.hidden_count,
    }


@router.post(
    "/medical/patients/{patient_id}/entries", response={201: RecordEntryOut}, auth=PRACTITIONERS
)
def write_entry(request, patient_id: Id, payload: EntryIn):
    """Add an entry authored by the practitioner's clinic (patient in care there, or under
    emergency access)."""
    entry = services.practitioner_entry_write(
        actor=request.user,
        patient_id=patient_id,
        category=payload.category,
        title=payload.title,
        body=payload.body,
        code=payload.code,
    )
    return Status(201, record_entry_out(entry))


@router.post(
    "/medical/patients/{patient_id}/emergency-access",
    response={201: EmergencyOut},
    auth=PRACTITIONERS,
)
def emergency_access(request, patient_id: Id, payload: EmergencyIn):
    """Break-glass access to the whole record for a few hours; audited, reviewed, and the
    patient is told at once."""
    access = services.emergency_access_declare(
        actor=request.user, patient_id=patient_id, justification=payload.justification
    )
    return Status(201, {"id": access.pk, "expires_at": access.expires_at})


@router.get("/medical/emergency-accesses", response=list[EmergencyReviewOut], auth=CLINIC_ADMINS)
@paginate(Pagination)
def emergency_review(request):
    """Clinic admins review every emergency access declared at their clinics."""
    return RenderedPage(services.emergency_accesses_for_review(actor=request.user), _emergency_rows)


def _emergency_rows(accesses: list) -> list[dict]:
    data_keys_preload({access.patient_id for access in accesses})
    now = timezone.now()
    return [
        {
            "id": access.pk,
            "practitioner": {
                "id": access.practitioner_id,
                "name": f"{access.practitioner.first_name} {access.practitioner.last_name}",
            },
            "clinic": {"id": access.clinic_id, "name": access.clinic.name},
            "patient_id": access.patient_id,
            "declared_at": access.declared_at,
            "expires_at": access.expires_at,
            "active": access.expires_at > now,
            "justification": access.note.justification,
        }
        for access in accesses
    ]


# --- GDPR -----------------------------------------------------------------------------------


EXPORT_RESPONSES = {
    "responses": {
        200: {
            "description": "A download: Patterm's JSON export, or with `format=fhir` a FHIR "
            "Bundle (`application/fhir+json`).",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                FHIR_JSON: {"schema": {"type": "object"}},
            },
        }
    }
}


@router.get("/patient/record/export", auth=PATIENTS, openapi_extra=EXPORT_RESPONSES)
def export(request, format: Literal["json", "fhir"] = "json"):
    """Everything Patterm holds about the patient (GDPR Art. 15 and 20): profile, appointments,
    record entries, consents and the access log; `format=fhir` gives a FHIR R4(B) Bundle."""
    return export_response(patient=request.user, format=format)


def export_response(*, patient, format: str, actor=None) -> JsonResponse:
    """The export download (the API and the portal's "my record" page): the record is read
    through `own_record_read`, so it is audited like every read. `actor`: the account holder
    exporting a relative's data (`patient`), read on the holder basis (decision 0014)."""
    if actor is None:
        profile, record = services.own_record_read(patient=patient)
    else:
        profile = services.patient_profile_get(patient=patient)
        record = services.record_read(actor=actor, patient=patient)
    data = {
        "format": "patterm-patient-export/v1",
        "exported_at": timezone.now(),
        "profile": _profile_out(patient, profile),
        "appointments": [
            appointment_out(a, viewer=patient, staff_clinics=frozenset())
            for a in appointments_visible_to(patient).order_by("-starts_at")
        ],
        "entries": [record_entry_out(entry) for entry in record.entries],
        "consents": [
            ConsentOut.from_orm(consent).dict() for consent in consents_of(patient=patient)
        ],
        "access_log": access_log_rows(list(events_about(patient_id=patient.pk))),
    }
    if format == "fhir":
        body, filename, content_type = export_bundle(data), "patterm-export.fhir.json", FHIR_JSON
    else:
        data["appointments"] = [
            AppointmentOut.model_validate(item).model_dump(mode="json", exclude_none=True)
            for item in data["appointments"]
        ]
        body, filename, content_type = data, "patterm-export.json", "application/json"
    response = JsonResponse(
        body,
        encoder=DjangoJSONEncoder,
        json_dumps_params={"indent": 2},
        content_type=content_type,
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@router.post("/patient/erasure-request", response={202: dict}, auth=PATIENTS)
def erasure(request):
    """Ask for erasure: the account closes and every token ends now, future appointments are
    cancelled; the data is erased by an operator once the retention duty has passed."""
    filed = erasure_request(patient=request.user)
    return Status(
        202,
        {
            "id": str(filed.pk),
            "retain_until": filed.retain_until.isoformat(),
            "detail": str(MESSAGE_ERASURE_FILED),
        },
    )
