import datetime
import uuid

from ninja import Field, Schema
from pydantic import field_validator

from accounts.schemas import clean_iso_date


class ClinicBrief(Schema):
    id: int
    name: str
    slug: str
    city: str
    address: str


class ConsentOut(Schema):
    id: uuid.UUID
    grantee_clinic: ClinicBrief
    source_clinic: ClinicBrief | None
    categories: list[str]
    purpose: str
    valid_from: datetime.date
    valid_until: datetime.date | None
    status: str
    granted_at: datetime.datetime
    revoked_at: datetime.datetime | None


class ConsentIn(Schema):
    grantee_clinic: int = Field(..., ge=1, le=2**62)
    source_clinic: int | None = Field(None, ge=1, le=2**62)
    categories: list[str] = Field(..., max_length=10)
    valid_until: datetime.date | None = None

    _date = field_validator("valid_until", mode="before")(
        lambda value: value if value is None else clean_iso_date(value)
    )


class ActorOut(Schema):
    role: str
    clinic: dict | None


class AccessLogRow(Schema):
    seq: int = Field(description="the audit event's sequence number")
    leaf_index: int | None = Field(
        description="its leaf in the audit log's Merkle tree; null while it is being added"
    )
    signed: bool = Field(description="the latest signed checkpoint covers it")
    proof: str = Field(description="path of its inclusion proof against the latest checkpoint")
    at: datetime.datetime
    action: str
    actor: ActorOut
    purpose: str
    basis: str
    outcome: str
