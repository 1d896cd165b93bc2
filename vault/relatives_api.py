"""Relatives in the JSON API (decision 0014): an account holder adds relatives and acts for
them: record, appointments, consents, access log, export, and the invitation to take over.

Patients only (staff: 403); someone else's relative, a former one or an id that does not exist:
404. Cancelling goes through POST /api/appointments/{id}/cancel, which accepts a relative's
appointment from its holder.
"""

from typing import Literal

from django.utils.translation import gettext_lazy as _
from ninja import Router, Status
from ninja.pagination import paginate

from accounts.auth import BearerTokenAuth
from accounts.models import Role
from audit.api import PatientProofOut
from audit.selectors import events_about
from audit.services import patient_event_proof
from booking.api import appointment_out, appointments_out
from booking.schemas import AppointmentOut
from booking.services import appointment_book, appointments_visible_to
from consent.api import access_log_rows
from consent.schemas import AccessLogRow, ConsentIn, ConsentOut
from consent.services import consent_grant, consent_revoke, consents_of
from patterm.numbers import Id
from patterm.pagination import Pagination, RenderedPage
from vault import relatives
from vault.api import EXPORT_RESPONSES, export_response, record_entry_out
from vault.schemas import (
    InvitationIn,
    InvitationOut,
    RelativeBookIn,
    RelativeIn,
    RelativeOut,
    RelativeRecordOut,
)

# Relatives are the holder's business alone: the role is checked before any body or query is
# read (issue 18), with the same answer as the handlers' own check gave before.
router = Router(
    tags=["relatives"],
    auth=BearerTokenAuth(
        Role.PATIENT, message=relatives.MESSAGE_ONLY_PATIENTS, code="not_a_patient"
    ),
)

MESSAGE_INVITED = _(
    "The invitation is on its way. Once your relative has chosen a password, their record is "
    "theirs alone and you no longer see it."
)


def _relative(request, relative_id: int) -> relatives.Relative:
    return relatives.relative_get(holder=request.user, relative_id=relative_id)


def relative_out(relative: relatives.Relative) -> dict:
    return {
        "id": relative.id,
        "first_name": relative.profile.first_name,
        "last_name": relative.profile.last_name,
        "date_of_birth": relative.profile.date_of_birth,
        "relationship": relative.link.relationship,
        "age": relative.age,
        "may_take_over": relative.may_take_over,
        "invited_at": relative.link.invited_at,
        "added_at": relative.link.created_at,
    }


@router.get("/relatives", response=list[RelativeOut])
@paginate(Pagination)
def relatives_list(request):
    """The relatives the account manages, in the order they were added."""
    return [relative_out(r) for r in relatives.relatives_of(holder=request.user)]


@router.post("/relatives", response={201: RelativeOut})
def relative_add(request, payload: RelativeIn):
    """Add a relative (a child, say): a patient of their own, without a login."""
    added = relatives.relative_add(
        holder=request.user,
        first_name=payload.first_name,
        last_name=payload.last_name,
        date_of_birth=payload.date_of_birth,
        relationship=payload.relationship,
        insurance_type=payload.insurance_type,
        insurer_name=payload.insurer_name,
        insurance_number=payload.insurance_number,
    )
    return Status(201, relative_out(added))


@router.get("/relatives/{int:relative_id}", response=RelativeOut)
def relative(request, relative_id: int):
    return relative_out(_relative(request, relative_id))


@router.get("/relatives/{int:relative_id}/record", response=RelativeRecordOut, exclude_unset=True)
def relative_record(request, relative_id: int):
    """The relative's profile, appointments and record, read on the `holder` basis (audited,
    with the relative as subject)."""
    found, record = relatives.relative_record_read(holder=request.user, relative_id=relative_id)
    return {
        "relative": relative_out(found),
        "appointments": [
            appointment_out(a, viewer=found.user, staff_clinics=frozenset())
            for a in appointments_visible_to(found.user).order_by("-starts_at")
        ],
        "entries": [record_entry_out(entry) for entry in record.entries],
        "hidden_count": record.hidden_count,
    }


@router.get(
    "/relatives/{int:relative_id}/appointments", response=list[AppointmentOut], exclude_unset=True
)
@paginate(Pagination)
def relative_appointments(request, relative_id: int):
    """The relative's appointments, newest first."""
    found = _relative(request, relative_id)
    listed = appointments_visible_to(found.user).order_by("-starts_at", "pk")
    return RenderedPage(listed, lambda page: appointments_out(page, viewer=found.user))


@router.post(
    "/relatives/{int:relative_id}/appointments",
    response={201: AppointmentOut},
    exclude_unset=True,
)
def relative_book(request, relative_id: int, payload: RelativeBookIn):
    """Book a free slot for the relative; the confirmation goes to the holder."""
    found = _relative(request, relative_id)
    appointment = appointment_book(
        patient=found.user, actor=request.user, slot_id=payload.slot_id, reason=payload.reason
    )
    return Status(201, appointment_out(appointment, viewer=request.user))


@router.get("/relatives/{int:relative_id}/consents", response=list[ConsentOut])
@paginate(Pagination)
def relative_consents(request, relative_id: int):
    return consents_of(patient=_relative(request, relative_id).user)


@router.post("/relatives/{int:relative_id}/consents", response={201: ConsentOut})
def relative_consent_grant(request, relative_id: int, payload: ConsentIn):
    """Let a clinic see some categories of the relative's record (audited as the holder)."""
    found = _relative(request, relative_id)
    consent = consent_grant(
        patient=found.user,
        actor=request.user,
        grantee_clinic_id=payload.grantee_clinic,
        source_clinic_id=payload.source_clinic,
        categories=payload.categories,
        valid_until=payload.valid_until,
    )
    return Status(201, consents_of(patient=found.user).get(pk=consent.pk))


@router.post("/relatives/{int:relative_id}/consents/{uuid:consent_id}/revoke", response=ConsentOut)
def relative_consent_revoke(request, relative_id: int, consent_id):
    found = _relative(request, relative_id)
    consent_revoke(patient=found.user, actor=request.user, consent_id=consent_id)
    return consents_of(patient=found.user).get(pk=consent_id)


@router.get("/relatives/{int:relative_id}/access-log", response=list[AccessLogRow])
@paginate(Pagination)
def relative_access_log(request, relative_id: int):
    """Who did what with the relative's data, the holder's own actions included (basis
    `holder`). Newest first."""
    found = _relative(request, relative_id)
    return RenderedPage(
        events_about(patient_id=found.id),
        lambda events: access_log_rows(
            events, lambda seq: f"/api/relatives/{found.id}/access-log/{seq}/proof"
        ),
    )


@router.get("/relatives/{int:relative_id}/access-log/{seq}/proof", response=PatientProofOut)
def relative_access_log_proof(request, relative_id: int, seq: Id):
    """The inclusion proof of event `seq` of the relative's access log against the latest
    checkpoint, as GET /api/audit/access-log/{seq}/proof gives the holder for their own."""
    found = _relative(request, relative_id)
    return patient_event_proof(patient_id=found.id, seq=seq)


@router.get("/relatives/{int:relative_id}/export", openapi_extra=EXPORT_RESPONSES)
def relative_export(request, relative_id: int, format: Literal["json", "fhir"] = "json"):
    """Everything Patterm holds about the relative, as GET /api/patient/record/export."""
    found = _relative(request, relative_id)
    return export_response(patient=found.user, format=format, actor=request.user)


@router.post("/relatives/{int:relative_id}/invitation", response={202: InvitationOut})
def relative_invite(request, relative_id: int, payload: InvitationIn):
    """Invite a relative of PATTERM_RELATIVE_OWN_ACCOUNT_AGE or older to take over with their
    own account: an e-mail with a signed link to their address. Younger: `409
    relative_too_young`."""
    invited = relatives.relative_invite(
        holder=request.user, relative_id=relative_id, email=payload.email
    )
    return Status(202, {"detail": str(MESSAGE_INVITED), "invited_at": invited.link.invited_at})
