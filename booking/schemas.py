import datetime
import re
import uuid
from typing import Literal

from django.conf import settings
from ninja import Field, Schema
from pydantic import field_validator, model_validator

from accounts.schemas import ClinicOut, clean_iso_date
from booking.models import AppointmentStatus
from patterm.numbers import AsciiInt, Digits, Id, ascii_int

# Days become local midnights and slot times (a day or a month on, for an end); near datetime's
# limits that overflows, so filter days and slot dates lie in this range.
DATE_MIN = datetime.date(1900, 1, 1)
DATE_MAX = datetime.date(2999, 12, 31)
CLINIC_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def filter_date():
    return Field(
        None,
        ge=DATE_MIN,
        le=DATE_MAX,
        description=f"YYYY-MM-DD, {DATE_MIN} to {DATE_MAX}.",
    )


def _day(value: datetime.date) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


class SpecialtyOut(Schema):
    slug: str
    name: str


class ClinicWithSpecialtiesOut(ClinicOut):
    specialties: list[SpecialtyOut]

    @staticmethod
    def resolve_specialties(clinic) -> list:
        """From the prefetched practitioners' specialties: no query per clinic."""
        offered = {
            offer.specialty.slug: offer.specialty
            for membership in clinic.memberships.all()
            for offer in membership.specialties.all()
        }
        return [offered[slug] for slug in sorted(offered)]


class SlotClinic(Schema):
    id: int
    name: str
    city: str


class PersonRef(Schema):
    id: int
    name: str


class SlotOut(Schema):
    """Built from a Slot with clinic, practitioner and specialty selected."""

    id: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    clinic: SlotClinic
    practitioner: PersonRef
    specialty: SpecialtyOut

    @staticmethod
    def resolve_id(slot) -> str:
        return slot.public_id

    @staticmethod
    def resolve_practitioner(slot) -> dict:
        person = slot.practitioner
        return {"id": person.pk, "name": f"{person.first_name} {person.last_name}".strip()}


class SnapshotOut(Schema):
    id: int
    first_name: str
    last_name: str
    date_of_birth: datetime.date | str
    insurance_type: str | None = None


class MotiveRef(Schema):
    id: int
    name: str
    duration_minutes: int


class MotiveOut(MotiveRef):
    """A visit motive as patients see it before booking."""

    specialty: SpecialtyOut
    patients: str
    insurance_types: list[str]
    note: str

    @staticmethod
    def resolve_insurance_types(motive) -> list[str]:
        return motive.accepted_insurance_types


class AppointmentOut(Schema):
    id: uuid.UUID
    status: str
    slot: SlotOut
    booked_at: datetime.datetime
    cancelled_at: datetime.datetime | None
    reason: str | None = None
    # "holder": booked by the account holder of a relative; absent: by the patient.
    booked_by: str | None = None
    patient: SnapshotOut | None = None
    motive: MotiveRef | None = None
    ends_at: datetime.datetime | None = None


class BookIn(Schema):
    slot_id: str = Field(..., max_length=40)
    reason: str = Field("", max_length=500)
    motive_id: int | None = Field(
        None, ge=1, le=2**62, description="A visit motive of the slot's practitioner."
    )
    insurance_type: str | None = Field(
        None,
        max_length=20,
        description="gesetzlich, privat or selbstzahler; default: the profile's.",
    )


class MoveIn(Schema):
    slot_id: str = Field(
        ...,
        max_length=40,
        description="A free slot of the same practitioner, clinic and specialty.",
    )


class SlotFilters(Schema):
    specialty: str | None = Field(None, max_length=60)
    city: str | None = Field(None, max_length=100)
    clinic: str | None = Field(None, max_length=80, description="A clinic's slug or id.")
    practitioner: Id | None = None
    date_from: datetime.date | None = filter_date()
    date_to: datetime.date | None = filter_date()
    motive: Id | None = Field(None, description="Only start times where this visit motive fits.")
    insurance_type: Literal["gesetzlich", "privat", "selbstzahler"] | None = None
    patient_status: Literal["new", "known"] | None = Field(
        None, description="Whether the patient has been at the clinic before."
    )

    _dates = field_validator("date_from", "date_to", mode="before")(
        lambda value: value if value in (None, "") else clean_iso_date(value)
    )

    @field_validator("clinic")
    @classmethod
    def _slug_or_id(cls, value: str | None) -> str | None:
        # A slug (ASCII letters, digits, hyphens) or an id in ASCII digits: "73¹" is neither.
        if value and not (CLINIC_SLUG.fullmatch(value) or ascii_int(value)):
            raise ValueError("Give a clinic's slug or its id (digits 0-9).")
        return value


class AppointmentFilters(Schema):
    status: AppointmentStatus | None = None
    date_from: datetime.date | None = filter_date()
    date_to: datetime.date | None = filter_date()

    _dates = field_validator("date_from", "date_to", mode="before")(
        lambda value: value if value in (None, "") else clean_iso_date(value)
    )


class SlotsIn(Schema):
    """One slot (`starts_at` + `ends_at`) or a series (`date_from`..`date_to`, daily hours)."""

    clinic: Digits = AsciiInt(ge=1)
    practitioner: Digits = AsciiInt(ge=1)
    specialty: str = Field(..., max_length=60)
    starts_at: datetime.datetime | None = None
    ends_at: datetime.datetime | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    start_time: datetime.time | None = None
    end_time: datetime.time | None = None
    slot_minutes: Digits = AsciiInt(20, ge=5, le=240)
    weekdays: list[Digits] = Field(default_factory=lambda: [0, 1, 2, 3, 4], max_length=7)

    @model_validator(mode="after")
    def _one_slot_or_a_series(self):
        single = self.starts_at is not None or self.ends_at is not None
        series = any(
            value is not None
            for value in (self.date_from, self.date_to, self.start_time, self.end_time)
        )
        if single == series:
            raise ValueError(
                "Give either starts_at and ends_at, or date_from, date_to, start_time, end_time."
            )
        if single and (self.starts_at is None or self.ends_at is None):
            raise ValueError("A single slot needs starts_at and ends_at.")
        days = [self.date_from, self.date_to, self.starts_at, self.ends_at]
        if any(day and not DATE_MIN <= _day(day) <= DATE_MAX for day in days):
            raise ValueError(f"Dates lie from {DATE_MIN} to {DATE_MAX}.")
        if single and (self.starts_at.tzinfo is None or self.ends_at.tzinfo is None):
            raise ValueError("starts_at and ends_at need a time zone offset.")
        if single and self.starts_at >= self.ends_at:
            raise ValueError("starts_at must lie before ends_at.")
        if series and None in (self.date_from, self.date_to, self.start_time, self.end_time):
            raise ValueError("A series needs date_from, date_to, start_time and end_time.")
        if series and not (self.date_from <= self.date_to and self.start_time < self.end_time):
            raise ValueError("The dates and times of the series are in the wrong order.")
        if series and (self.date_to - self.date_from).days > settings.PATTERM_SLOT_SERIES_MAX_DAYS:
            raise ValueError(
                f"A series spans at most {settings.PATTERM_SLOT_SERIES_MAX_DAYS} days."
            )
        if any(day not in range(7) for day in self.weekdays):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday).")
        return self


class ScheduleFilters(Schema):
    date_from: datetime.date | None = filter_date()
    date_to: datetime.date | None = filter_date()

    _dates = field_validator("date_from", "date_to", mode="before")(
        lambda value: value if value in (None, "") else clean_iso_date(value)
    )


# --- Waitlist ---------------------------------------------------------------------------------


class WaitlistIn(Schema):
    """What to wait for: a specialty, optionally a city, clinic, practitioner, local days."""

    specialty: str = Field(..., max_length=60)
    city: str = Field("", max_length=100)
    clinic: Id | None = None
    practitioner: Id | None = None
    date_from: datetime.date | None = filter_date()
    date_to: datetime.date | None = filter_date()

    _dates = field_validator("date_from", "date_to", mode="before")(
        lambda value: value if value in (None, "") else clean_iso_date(value)
    )


class OfferOut(Schema):
    """A freed slot held for the patient until `expires_at`."""

    id: uuid.UUID
    entry: uuid.UUID
    status: str
    slot: SlotOut
    offered_at: datetime.datetime
    expires_at: datetime.datetime
    decided_at: datetime.datetime | None

    @staticmethod
    def resolve_entry(offer) -> uuid.UUID:
        return offer.entry_id


class WaitlistEntryOut(Schema):
    id: uuid.UUID
    status: str
    specialty: SpecialtyOut
    city: str
    clinic: SlotClinic | None
    practitioner: PersonRef | None
    date_from: datetime.date | None
    date_to: datetime.date | None
    joined_at: datetime.datetime
    offer: OfferOut | None

    @staticmethod
    def resolve_practitioner(entry) -> dict | None:
        person = entry.practitioner
        if person is None:
            return None
        return {"id": person.pk, "name": f"{person.first_name} {person.last_name}".strip()}

    @staticmethod
    def resolve_offer(entry):
        """The open offer, from the prefetched `open_offers`: no query per entry."""
        offers = getattr(entry, "open_offers", [])
        return offers[0] if offers else None


class OfferConfirmIn(Schema):
    reason: str = Field("", max_length=500)


# --- Insurance --------------------------------------------------------------------------------


class InsuranceOut(Schema):
    insurance_type: str | None
    insurer_name: str | None
    insurance_number: str | None


class InsuranceIn(Schema):
    """Replace the insurance on the profile: every key is required; null or "" clears it."""

    insurance_type: str | None = Field(
        ..., max_length=20, description="gesetzlich, privat or selbstzahler"
    )
    insurer_name: str | None = Field(..., max_length=100)
    insurance_number: str | None = Field(
        ..., max_length=20, description="The 10-character Krankenversichertennummer."
    )
