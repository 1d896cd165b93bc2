"""The audit log in the JSON API: the auditor's event list, verification, checkpoint and
proofs; a patient's inclusion proof for one event of their access log."""

import datetime

from django.utils.translation import gettext_lazy as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from pydantic import field_serializer, field_validator

from accounts.auth import BearerTokenAuth
from accounts.models import Role
from audit.services import (
    checkpoint_document,
    checkpoint_latest,
    consistency_proof_document,
    events_read,
    inclusion_proof_document,
    patient_event_proof,
    verification_run,
)
from patterm.errors import Forbidden
from patterm.numbers import AsciiInt, Digits, Id
from patterm.pagination import Pagination

router = Router(tags=["audit"])

MESSAGE_AUDITORS_ONLY = _("Only auditors read the audit log.")
MESSAGE_PATIENTS_ONLY = _("Only patients download proofs of their own access log.")
# Tree sizes and leaf indices beyond this are refused by validation (a bigint leaves room).
LARGEST = 2**62


class AuditEventOut(Schema):
    seq: int
    occurred_at: datetime.datetime = Field(json_schema_extra={"format": "date-time"})
    actor_id: int | None
    actor_role: str
    action: str
    object_type: str
    object_id: str
    subject_ref: str
    clinic_id: int | None
    purpose: str
    outcome: str
    request_id: str
    client_address: str | None
    details: dict
    leaf_index: int | None
    prev_hash: str | None
    hash: str | None

    @field_serializer("occurred_at")
    def _with_microseconds(self, value: datetime.datetime) -> str:
        # The hash covers microseconds; the default encoder would cut them to milliseconds and
        # the row would no longer match its hash for an auditor recomputing it.
        return value.isoformat(timespec="microseconds")


class EventFilters(Schema):
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    action: str | None = Field(None, max_length=64)
    actor: Id | None = None

    @field_validator("since", "until")
    @classmethod
    def _with_offset(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        # A time without offset would be read in the server's zone (and warned about): refused.
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-01-01T00:00:00+01:00")
        try:
            # Compared in UTC: a time at the calendar's edge may have none (a 500 before).
            if value is not None:
                value.astimezone(datetime.UTC)
        except OverflowError:
            raise ValueError("lies outside the calendar.") from None
        return value


class AuditVerifyOut(Schema):
    ok: bool
    events_checked: int
    head_seq: int | None
    head_hash: str | None
    first_broken_seq: int | None
    first_broken_leaf: int | None
    checkpoints_checked: int
    tree_size: int
    root_hash: str | None
    staged_events: int
    problem: str


class CheckpointOut(Schema):
    tree_size: int
    root_hash: str = Field(description="base64 SHA-256 root (RFC 9162)")
    note: str = Field(description="the C2SP checkpoint as a signed note (Ed25519)")
    created_at: datetime.datetime
    verifier_keys: list[str] = Field(description="note verifier keys: name+hash+base64")


class InclusionQuery(Schema):
    index: Digits = AsciiInt(ge=0, le=LARGEST, description="leaf index, from 0")
    tree_size: Digits = AsciiInt(ge=1, le=LARGEST, description="size of a signed checkpoint")


class InclusionProofOut(Schema):
    leaf_index: int
    tree_size: int
    leaf: str = Field(description="the leaf: the event's canonical JSON, hashed as UTF-8")
    proof: list[str] = Field(description="base64 hashes, leaf to root (sumdb/tlog RecordProof)")
    checkpoint: str = Field(description="the signed note of the checkpoint of tree_size")


class PatientProofOut(InclusionProofOut):
    verifier_keys: list[str]


class ConsistencyQuery(Schema):
    from_: Digits = AsciiInt(
        ge=1, le=LARGEST, alias="from", description="size of the older checkpoint"
    )
    to: Digits = AsciiInt(ge=1, le=LARGEST, description="size of the newer checkpoint")


class ConsistencyProofOut(Schema):
    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    proof: list[str] = Field(description="base64 hashes (sumdb/tlog TreeProof)")
    checkpoint: str = Field(description="the signed note of the checkpoint of `to`")


def _require_auditor(request) -> None:
    if request.user.role != Role.AUDITOR:
        raise Forbidden(MESSAGE_AUDITORS_ONLY, "auditors_only")


@router.get("/audit/events", response=list[AuditEventOut])
@paginate(Pagination)
def events(request, filters: Query[EventFilters]):
    """Audit events, oldest first; filters by time (`since`, `until`), `action`, `actor` (id)."""
    _require_auditor(request)
    return events_read(
        actor=request.user,
        since=filters.since,
        until=filters.until,
        action=filters.action,
        actor_id=filters.actor,
    )


@router.get("/audit/verify", response=AuditVerifyOut)
def verify(request):
    """Verify the whole chain and its signed checkpoints now (the run is audited)."""
    _require_auditor(request)
    return verification_run(actor=request.user).as_dict()


@router.get("/audit/checkpoint", response=CheckpointOut)
def checkpoint(request):
    """The latest signed checkpoint of the log (keep it: later consistency proofs start there)."""
    _require_auditor(request)
    return checkpoint_document(checkpoint_latest())


@router.get("/audit/proof/inclusion", response=InclusionProofOut)
def proof_inclusion(request, query: Query[InclusionQuery]):
    """That leaf `index` is in the signed tree of `tree_size` leaves (RFC 9162 audit path)."""
    _require_auditor(request)
    return inclusion_proof_document(index=query.index, tree_size=query.tree_size)


@router.get("/audit/proof/consistency", response=ConsistencyProofOut, by_alias=True)
def proof_consistency(request, query: Query[ConsistencyQuery]):
    """That the signed tree of `from` leaves is a prefix of the one of `to` leaves."""
    _require_auditor(request)
    return consistency_proof_document(old_size=query.from_, new_size=query.to)


# The one route of this router for patients: its own role check replaces the auditors' one that
# patterm/api.py sets on the router, and still runs before the path is parsed (issue 18).
@router.get(
    "/audit/access-log/{seq}/proof",
    response=PatientProofOut,
    auth=BearerTokenAuth(Role.PATIENT, message=MESSAGE_PATIENTS_ONLY, code="patients_only"),
)
def access_log_proof(request, seq: Id):
    """For a patient: the inclusion proof of event `seq` of their own access log against the
    latest checkpoint; another patient's event answers 404."""
    return patient_event_proof(patient_id=request.user.pk, seq=seq)
