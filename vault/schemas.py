import datetime
import uuid

from ninja import Field, Schema
from pydantic import field_validator

from accounts.schemas import clean_iso_date
from booking.schemas import AppointmentOut
from consent.models import RecordCategory, Relationship
from vault.services import (
    EMERGENCY_JUSTIFICATION_MAX_LENGTH,
    EMERGENCY_JUSTIFICATION_MIN_LENGTH,
)


class ClinicRef(Schema):
    id: int
    name: str


class AuthorRef(Schema):
    id: int
    name: str


class RecordEntryOut(Schema):
    id: uuid.UUID
    category: str
    title: str
    body: str
    code: str | None = None
    clinic: ClinicRef
    author: AuthorRef
    created_at: datetime.datetime
    basis: str


class ProfileOut(Schema):
    id: int
    email: str
    first_name: str
    last_name: str
    date_of_birth: datetime.date | str  # the string only for "[erased]"


class PatientRecordOut(Schema):
    profile: ProfileOut
    appointments: list[AppointmentOut]
    entries: list[RecordEntryOut]
    hidden_count: int


class PractitionerRecordOut(Schema):
    patient: dict
    entries: list[RecordEntryOut]
    hidden_count: int


class EntryIn(Schema):
    category: RecordCategory
    title: str = Field(..., min_length=1, max_length=200)
    body: str = Field(..., min_length=1, max_length=20_000)
    # ICD-10-GM, ATC or PZN, SNOMED CT or LOINC by category (vault/coding.py); a code of the
    # wrong shape is a 422 naming `code`.
    code: str | None = Field(None, max_length=20)


class EmergencyIn(Schema):
    justification: str = Field(
        ...,
        min_length=EMERGENCY_JUSTIFICATION_MIN_LENGTH,
        max_length=EMERGENCY_JUSTIFICATION_MAX_LENGTH,
    )


class EmergencyOut(Schema):
    id: uuid.UUID
    expires_at: datetime.datetime


class EmergencyReviewOut(Schema):
    id: uuid.UUID
    practitioner: AuthorRef
    clinic: ClinicRef
    patient_id: int
    declared_at: datetime.datetime
    expires_at: datetime.datetime
    active: bool
    justification: str


# --- Relatives (decision 0014) --------------------------------------------------------------


class RelativeIn(Schema):
    first_name: str = Field(..., max_length=100)
    last_name: str = Field(..., max_length=100)
    date_of_birth: datetime.date
    relationship: Relationship = Relationship.CHILD
    insurance_type: str | None = Field(
        None, max_length=20, description="gesetzlich, privat or selbstzahler"
    )
    insurer_name: str | None = Field(None, max_length=100)
    insurance_number: str | None = Field(
        None, max_length=20, description="The 10-character Krankenversichertennummer."
    )

    _date = field_validator("date_of_birth", mode="before")(clean_iso_date)


class RelativeOut(Schema):
    id: int
    first_name: str
    last_name: str
    date_of_birth: datetime.date
    relationship: str
    age: int
    # Old enough (PATTERM_RELATIVE_OWN_ACCOUNT_AGE) to take over with an account of their own.
    may_take_over: bool
    invited_at: datetime.datetime | None
    added_at: datetime.datetime


class RelativeRecordOut(Schema):
    relative: RelativeOut
    appointments: list[AppointmentOut]
    entries: list[RecordEntryOut]
    hidden_count: int


class RelativeBookIn(Schema):
    slot_id: str = Field(..., max_length=40)
    reason: str = Field("", max_length=500)


class InvitationIn(Schema):
    email: str = Field(..., max_length=254)


class InvitationOut(Schema):
    detail: str
    invited_at: datetime.datetime
