"""Builders for the booking tests: specialties, practitioners, slots, tokens, and stored values
read behind the ORM's back, the way a database dump shows them."""

import datetime
import itertools
import json

from django.db import connection
from django.utils import timezone

from accounts.models import Clinic, Membership, Role, User
from accounts.services import ClientInfo, IssuedToken, token_issue
from accounts.tests.factories import ClinicFactory, StaffFactory
from booking.models import PractitionerSpecialty, Slot, Specialty

SPECIALTY_NAMES = {
    "allgemeinmedizin": ("Allgemeinmedizin", "General practice"),
    "dermatologie": ("Dermatologie", "Dermatology"),
    "kardiologie": ("Kardiologie", "Cardiology"),
}

# Slots made without a start time lie on their own hour, days ahead: never in the past, never
# overlapping one another, never within a clinic's 24-hour cancellation cut-off.
_free_hours = itertools.count()


def specialty_get(slug: str = "allgemeinmedizin") -> Specialty:
    name_de, name_en = SPECIALTY_NAMES.get(slug, (slug.title(), slug.title()))
    found, _ = Specialty.objects.get_or_create(
        slug=slug, defaults={"name_de": name_de, "name_en": name_en}
    )
    return found


def practitioner_create(
    *, clinic: Clinic | None = None, specialties: tuple[str, ...] = ("allgemeinmedizin",), **fields
) -> User:
    """A practitioner with a membership at `clinic` offering `specialties` there."""
    user = StaffFactory(clinic=clinic or ClinicFactory(), role=Role.PRACTITIONER, **fields)
    membership = Membership.objects.get(user=user)
    for slug in specialties:
        PractitionerSpecialty.objects.create(membership=membership, specialty=specialty_get(slug))
    return user


def staff_create(*, clinic: Clinic, role: str) -> User:
    return StaffFactory(clinic=clinic, role=role)


def membership_of(user: User) -> Membership:
    return Membership.objects.get(user=user)


def slot_create(
    *,
    practitioner: User | None = None,
    clinic: Clinic | None = None,
    specialty_slug: str = "allgemeinmedizin",
    starts_at: datetime.datetime | None = None,
    minutes: int = 20,
    is_booked: bool = False,
) -> Slot:
    """A slot written directly (as `generate_slots` would): the practitioner's clinic by default."""
    if practitioner is None:
        practitioner = practitioner_create(clinic=clinic)
    if clinic is None:
        clinic = membership_of(practitioner).clinic
    if starts_at is None:
        hours = next(_free_hours)
        starts_at = (timezone.now() + datetime.timedelta(days=3, hours=hours)).replace(
            minute=0, second=0, microsecond=0
        )
    return Slot.objects.create(
        clinic=clinic,
        practitioner=practitioner,
        specialty=specialty_get(specialty_slug),
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=minutes),
        is_booked=is_booked,
    )


def token_for(user: User) -> IssuedToken:
    """A bearer token for any account (staff sign in with a second factor; tests skip it)."""
    return token_issue(user=user, client=ClientInfo(address="127.0.0.1", user_agent="pytest"))


def bearer(token: IssuedToken | str) -> dict:
    raw = token if isinstance(token, str) else token.raw
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post_json(client, url: str, body: dict, token=None):
    headers = bearer(token) if token is not None else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def book(client, token, slot: Slot | str, **body):
    slot_id = slot if isinstance(slot, str) else slot.public_id
    return post_json(client, "/api/appointments", {"slot_id": slot_id, **body}, token)


def local(year, month, day, hour=0, minute=0) -> datetime.datetime:
    """An aware datetime on the wall clock of the project's time zone (Europe/Berlin)."""
    return timezone.make_aware(datetime.datetime(year, month, day, hour, minute))


def stored_value(model, pk, field_name: str):
    """One column of one row as the database holds it (an envelope for encrypted columns)."""
    quote = connection.ops.quote_name
    meta = model._meta
    table, column = quote(meta.db_table), quote(meta.get_field(field_name).column)
    pk_value = meta.pk.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE {quote(meta.pk.column)} = %s", [pk_value]
        )
        (value,) = cursor.fetchone()
    return value


def days_ahead(days: int, hour: int, minute: int = 0) -> datetime.datetime:
    """Berlin's wall clock `days` calendar days from today."""
    day = timezone.localdate() + datetime.timedelta(days=days)
    return local(day.year, day.month, day.day, hour, minute)
