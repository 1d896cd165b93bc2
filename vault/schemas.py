import datetime
import uuid

from ninja import Schema

from booking.schemas import AppointmentOut


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
