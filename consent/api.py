"""The patient's consents and access log."""

from collections.abc import Callable

from django.utils.translation import gettext_lazy as _
from ninja import Router, Status
from ninja.pagination import paginate

from accounts.auth import BearerTokenAuth
from accounts.models import Clinic, Role
from audit.selectors import events_about, signed_tree_size
from consent import services
from consent.schemas import AccessLogRow, ConsentIn, ConsentOut
from patterm.errors import Forbidden
from patterm.openapi import errors
from patterm.pagination import Pagination, RenderedPage

MESSAGE_PATIENTS_ONLY = _("Only patients manage consents and read their access log.")

# Every operation here is the patient's: other roles get 403 before the body is read.
router = Router(
    tags=["consent"],
    auth=BearerTokenAuth(Role.PATIENT, message=MESSAGE_PATIENTS_ONLY, code="not_a_patient"),
)


def _patient_only(request) -> None:
    if request.user.role != Role.PATIENT:
        raise Forbidden(MESSAGE_PATIENTS_ONLY, "not_a_patient")


@router.get("/patient/consents", response=list[ConsentOut])
@paginate(Pagination)
def consents(request):
    """The patient's consents, newest first, with their status (active, revoked, expired)."""
    _patient_only(request)
    return services.consents_of(patient=request.user)


@router.post("/patient/consents", response={201: ConsentOut})
def grant(request, payload: ConsentIn):
    """Let a clinic see some categories of the record, written by one clinic or by all."""
    _patient_only(request)
    consent = services.consent_grant(
        patient=request.user,
        grantee_clinic_id=payload.grantee_clinic,
        source_clinic_id=payload.source_clinic,
        categories=payload.categories,
        valid_until=payload.valid_until,
    )
    return Status(201, services.consents_of(patient=request.user).get(pk=consent.pk))


@router.post(
    "/patient/consents/{uuid:consent_id}/revoke",
    response=ConsentOut,
    openapi_extra=errors(**{"409": "`already_revoked`."}),
)
def revoke(request, consent_id):
    """Withdraw a consent: access ends with the next request."""
    _patient_only(request)
    services.consent_revoke(patient=request.user, consent_id=consent_id)
    return services.consents_of(patient=request.user).get(pk=consent_id)


def own_proof_path(seq: int) -> str:
    return f"/api/audit/access-log/{seq}/proof"


def access_log_rows(events, proof_path: Callable[[int], str] = own_proof_path) -> list[dict]:
    """AccessLogRows of API.md: role and clinic of the actor, never a name; clinic names come
    in one query for all rows, the latest checkpoint's size in one more. Each row names its
    event (`seq`), its leaf in the audit log's Merkle tree (None while the event is being
    added), whether the latest signed checkpoint covers it, and where its inclusion proof is
    downloaded (`proof_path(seq)`)."""
    names = dict(
        Clinic.objects.filter(pk__in={e.clinic_id for e in events}).values_list("pk", "name")
    )
    signed_size = signed_tree_size() if events else 0
    return [
        {
            "seq": event.seq,
            "leaf_index": event.leaf_index,
            "signed": event.leaf_index is not None and event.leaf_index < signed_size,
            "proof": proof_path(event.seq),
            "at": event.occurred_at,
            "action": event.action,
            "actor": {
                "role": event.actor_role,
                "clinic": {"id": event.clinic_id, "name": names.get(event.clinic_id, "")}
                if event.clinic_id
                else None,
            },
            "purpose": event.purpose,
            "basis": ",".join(event.details.get("bases", []))
            or ("emergency" if event.action == "emergency.declare" else ""),
            "outcome": event.outcome,
        }
        for event in events
    ]


@router.get("/patient/access-log", response=list[AccessLogRow])
@paginate(Pagination)
def access_log(request):
    """Who did what with the patient's data: role and clinic (never a name), when, why, on
    which legal basis, and how it ended. Newest first. Each row carries its leaf index in the
    audit log (null while the event is being added) and `proof`, the path of its inclusion
    proof against the latest checkpoint (`signed` false: not in a checkpoint yet, the proof
    answers 422 `not_yet_signed`)."""
    _patient_only(request)
    return RenderedPage(events_about(patient_id=request.user.pk), access_log_rows)
