"""The auditor's part of the JSON API: the event log and its verification."""

import datetime

from django.utils.translation import gettext_lazy as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from pydantic import field_serializer, field_validator

from accounts.models import Role
from audit.services import events_read, verification_run
from patterm.errors import Forbidden
from patterm.pagination import Pagination

router = Router(tags=["audit"])

MESSAGE_AUDITORS_ONLY = _("Only auditors read the audit log.")


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
    prev_hash: str
    hash: str

    @field_serializer("occurred_at")
    def _with_microseconds(self, value: datetime.datetime) -> str:
        # The hash covers microseconds; the default encoder would cut them to milliseconds and
        # the row would no longer match its hash for an auditor recomputing it.
        return value.isoformat(timespec="microseconds")


class EventFilters(Schema):
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    action: str | None = Field(None, max_length=64)
    actor: int | None = Field(None, ge=1, le=2**62)

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
    checkpoints_checked: int
    problem: str


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
