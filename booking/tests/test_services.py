"""Booking and cancelling through the services: the database's own guarantees (SECURITY.md B3),
the encrypted booking snapshot, the confirmation e-mail, the audit rows, and slot times across
daylight saving time."""

import datetime
import itertools
import json
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from accounts.models import Role
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from booking.models import Appointment, AppointmentStatus, OutboxMail, Slot
from booking.services import appointment_book, appointment_cancel, wall_clock_slots
from booking.tests.conftest import CLINIC_ADDRESS, CLINIC_NAME
from booking.tests.factories import (
    local,
    practitioner_create,
    slot_create,
    specialty_get,
    staff_create,
    stored_value,
)
from consent.models import CareRelationship, CareSource
from patterm.errors import Conflict, Forbidden, NotFound

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")

# Personal data that must stay out of e-mails, audit rows and the database's plaintext.
FIRST_NAME = "Quirinus"
LAST_NAME = "Zwetschgenbaum"
BIRTH_DATE = datetime.date(1977, 3, 14)
BIRTH_DATE_SPELLINGS = ("1977-03-14", "14.03.1977", "14.3.1977", "1977")
REASON = "Ausschlag am Unterarm seit Ostern"


@pytest.fixture
def marked_patient(make_patient):
    """A patient whose name and birth date are easy to spot wherever they might leak."""
    return make_patient(first_name=FIRST_NAME, last_name=LAST_NAME, date_of_birth=BIRTH_DATE)


def assert_no_personal_data(text: str) -> None:
    for secret in (FIRST_NAME, LAST_NAME, REASON, "Ausschlag", *BIRTH_DATE_SPELLINGS):
        assert secret not in text


def new_appointment_row(*, slot: Slot, patient) -> Appointment:
    """An appointment written straight to the table, past every check of the services."""
    return Appointment.objects.create(
        slot=slot,
        patient=patient,
        starts_at=slot.starts_at,
        ends_at=slot.ends_at,
        patient_first_name="Eva",
        patient_last_name="Direkt",
        patient_date_of_birth=datetime.date(1990, 1, 1),
    )


# --- B3: the database refuses what the services would -----------------------------------------


def test_a_second_booked_appointment_for_a_slot_written_past_the_services_is_refused(
    slot, patient, make_patient
):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    intruder = make_patient().user

    with pytest.raises(IntegrityError), transaction.atomic():
        new_appointment_row(slot=slot, patient=intruder)

    assert Appointment.objects.filter(slot=slot).count() == 1


def test_a_cancelled_appointment_frees_the_slot_to_be_booked_again(slot, patient, make_patient):
    first = appointment_book(patient=patient.user, slot_id=slot.public_id)
    appointment_cancel(actor=patient.user, appointment_id=first.pk)
    slot.refresh_from_db()
    assert slot.is_booked is False

    second = appointment_book(patient=make_patient().user, slot_id=slot.public_id)

    slot.refresh_from_db()
    assert slot.is_booked is True
    statuses = dict(Appointment.objects.filter(slot=slot).values_list("pk", "status"))
    assert statuses == {first.pk: AppointmentStatus.CANCELLED, second.pk: AppointmentStatus.BOOKED}
    # The partial index counts booked appointments only: a cancelled one beside them is fine.
    with transaction.atomic():
        appointment_cancel(actor=second.patient, appointment_id=second.pk)
        new_appointment_row(slot=slot, patient=patient.user)


def test_overlapping_slots_of_one_practitioner_written_directly_are_refused(doctor):
    existing = slot_create(practitioner=doctor, starts_at=local(2030, 5, 6, 9, 0))

    for minutes_later in (0, 10, 19, -19):
        with pytest.raises(IntegrityError), transaction.atomic():
            slot_create(
                practitioner=doctor,
                starts_at=existing.starts_at + datetime.timedelta(minutes=minutes_later),
            )

    assert Slot.objects.filter(practitioner=doctor).count() == 1


def test_adjacent_slots_and_other_practitioners_at_the_same_time_are_fine(doctor, clinic):
    nine = local(2030, 5, 6, 9, 0)
    slot_create(practitioner=doctor, starts_at=nine)

    slot_create(practitioner=doctor, starts_at=nine + datetime.timedelta(minutes=20))
    slot_create(practitioner=doctor, starts_at=nine - datetime.timedelta(minutes=20))
    slot_create(practitioner=practitioner_create(clinic=clinic), starts_at=nine)

    assert Slot.objects.count() == 4


def test_moving_a_slot_onto_another_is_refused(doctor):
    nine = slot_create(practitioner=doctor, starts_at=local(2030, 5, 6, 9, 0))
    ten = slot_create(practitioner=doctor, starts_at=local(2030, 5, 6, 10, 0))

    with pytest.raises(IntegrityError), transaction.atomic():
        Slot.objects.filter(pk=ten.pk).update(starts_at=nine.starts_at, ends_at=nine.ends_at)

    # Moving a slot within its own time is no overlap with itself.
    Slot.objects.filter(pk=nine.pk).update(ends_at=nine.ends_at + datetime.timedelta(minutes=10))


def test_a_booked_slot_is_not_booked_twice_by_the_service(slot, patient, make_patient):
    appointment_book(patient=patient.user, slot_id=slot.public_id)

    with pytest.raises(Conflict) as refused:
        appointment_book(patient=make_patient().user, slot_id=slot.public_id)

    assert refused.value.code == "slot_taken"
    assert Appointment.objects.filter(slot=slot).count() == 1


def test_only_patients_book(slot, clinic):
    for role in (Role.PRACTITIONER, Role.CLINIC_ADMIN, Role.AUDITOR):
        with pytest.raises(Forbidden) as refused:
            appointment_book(patient=staff_create(clinic=clinic, role=role), slot_id=slot.public_id)
        assert refused.value.code == "not_a_patient"
    assert not Appointment.objects.exists()


# --- The booking snapshot ------------------------------------------------------------------


def test_the_snapshot_is_stored_encrypted_and_read_back(slot, marked_patient):
    appointment = appointment_book(
        patient=marked_patient.user, slot_id=slot.public_id, reason=REASON
    )

    for field in ("patient_first_name", "patient_last_name", "patient_date_of_birth", "reason"):
        stored = stored_value(Appointment, appointment.pk, field)
        assert stored.startswith("pt1$"), field
        assert_no_personal_data(stored)
    reread = Appointment.objects.get(pk=appointment.pk)
    assert (
        reread.patient_first_name,
        reread.patient_last_name,
        reread.patient_date_of_birth,
        reread.reason,
    ) == (FIRST_NAME, LAST_NAME, BIRTH_DATE, REASON)
    assert (reread.starts_at, reread.ends_at) == (slot.starts_at, slot.ends_at)


def test_booking_puts_the_patient_in_care_at_the_clinic_once(clinic, doctor, patient):
    for _ in range(2):
        appointment_book(patient=patient.user, slot_id=slot_create(practitioner=doctor).public_id)

    relationship = CareRelationship.objects.get(patient=patient.user)
    assert (relationship.clinic, relationship.source) == (clinic, CareSource.BOOKING)


def test_a_booking_costs_ten_queries_whatever_came_before(doctor, make_patient):
    """Issue 15: slot, profile with its data key, the patient's lock, the overlap check, the
    claim, the appointment and its slot row, the care relationship (one INSERT that does
    nothing once it exists), the audit row and the e-mail's outbox row; no key lookup, no
    waitlist read for a slot held for nobody, no e-mail rendered (decision 0022)."""
    patient = make_patient().user
    for _ in range(2):  # the first booking at the clinic and one where the patient is known
        slot = slot_create(practitioner=doctor)
        with CaptureQueriesContext(connection) as queries:
            appointment_book(patient=patient, slot_id=slot.public_id)
        statements = [
            query["sql"]
            for query in queries.captured_queries
            if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
        ]
        assert len(statements) == 10, statements
        assert not [sql for sql in statements if "waitlistoffer" in sql]
        assert not [sql for sql in statements if sql.startswith('SELECT "vault_patientkey"')]


# --- The confirmation e-mail -----------------------------------------------------------------


def test_the_confirmation_is_sent_after_commit_with_time_and_clinic_but_no_personal_data(
    doctor, marked_patient, sent_mails
):
    slot = slot_create(practitioner=doctor, starts_at=local(2030, 5, 6, 9, 40))

    with transaction.atomic():
        appointment = appointment_book(
            patient=marked_patient.user, slot_id=slot.public_id, reason=REASON
        )
        # Written in the booking's transaction, sent by the outbox's sender after it (0022).
        (queued,) = OutboxMail.objects.filter(appointment=appointment).values()
        assert mail.outbox == []
    assert (queued["kind"], queued["recipient_id"]) == ("confirmation", marked_patient.user.pk)
    assert_no_personal_data(json.dumps(queued, default=str))

    (message,) = sent_mails()
    assert message.to == [marked_patient.user.email]
    text = f"{message.subject}\n{message.body}"
    assert CLINIC_NAME in text
    assert CLINIC_ADDRESS in text
    assert "09:40" in text  # Berlin's wall clock, not UTC (07:40)
    assert "06.05.2030" in text
    assert f"/appointments/{appointment.pk}/ics/" in text
    assert f"/appointments/{appointment.pk}/\n" in text  # the portal's page, to cancel
    assert "/api/" not in text
    assert_no_personal_data(text)
    assert OutboxMail.objects.get(appointment=appointment).outcome == "sent"
    assert sent_mails() == [message]  # a second run sends nothing again


def test_no_confirmation_when_the_booking_fails_or_rolls_back(
    slot, patient, make_patient, sent_mails
):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    past = slot_create(practitioner=slot.practitioner, starts_at=local(2020, 1, 6, 9, 0))
    later = slot_create(practitioner=slot.practitioner)

    for slot_id in (slot.public_id, past.public_id, "slot-999999"):
        with pytest.raises((Conflict, NotFound)):
            appointment_book(patient=make_patient().user, slot_id=slot_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        appointment_book(patient=make_patient().user, slot_id=later.public_id)
        raise RuntimeError("the surrounding transaction fails after the booking")

    # Only the first booking's confirmation: the outbox row lives and dies with its booking.
    assert [message.to for message in sent_mails()] == [[patient.user.email]]


# --- Audit -----------------------------------------------------------------------------------


def test_booking_and_cancelling_are_audited_by_pseudonym_without_personal_data(
    clinic, slot, marked_patient
):
    patient = marked_patient.user
    appointment = appointment_book(patient=patient, slot_id=slot.public_id, reason=REASON)
    appointment_cancel(actor=patient, appointment_id=appointment.pk)

    rows = list(
        AuditEvent.objects.filter(
            action__in=[AuditAction.APPOINTMENT_BOOK, AuditAction.APPOINTMENT_CANCEL]
        ).order_by("seq")
    )
    assert [row.action for row in rows] == ["appointment.book", "appointment.cancel"]
    for row in rows:
        assert row.actor_id == patient.pk
        assert row.subject_ref == subject_pseudonym(patient.pk)
        assert row.object_id == str(appointment.pk)
        assert row.clinic_id == clinic.pk
    stored_rows = AuditEvent.objects.filter(pk__in=[row.pk for row in rows]).values()
    assert_no_personal_data(json.dumps(list(stored_rows), default=str))
    assert rows[0].details == {"slot": slot.public_id}
    assert rows[1].details == {"by": "patient"}


def test_a_refused_booking_writes_nothing(slot, patient, make_patient):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    other = make_patient().user
    events = AuditEvent.objects.count()

    with pytest.raises(Conflict):
        appointment_book(patient=other, slot_id=slot.public_id)

    assert AuditEvent.objects.count() == events
    assert not Appointment.objects.filter(patient=other).exists()
    assert not CareRelationship.objects.filter(patient=other).exists()


# --- Slot times across daylight saving time ------------------------------------------------


@pytest.mark.parametrize(
    ("change_day", "offset_before", "offset_on"),
    [
        (datetime.date(2027, 3, 28), 1, 2),  # the last Sunday of March: summer time begins
        (datetime.date(2027, 10, 31), 2, 1),  # the last Sunday of October: summer time ends
    ],
)
def test_slots_on_the_days_the_clocks_change_keep_their_wall_clock_time_and_length(
    change_day, offset_before, offset_on
):
    def nine_oclock(day):
        (first, *_) = wall_clock_slots(
            day=day,
            start=datetime.time(9, 0),
            end=datetime.time(12, 0),
            minutes=20,
            zone=BERLIN,
        )
        return first

    on, before = nine_oclock(change_day), nine_oclock(change_day - datetime.timedelta(days=1))

    assert on.starts_at.astimezone(BERLIN).time() == datetime.time(9, 0)
    assert before.starts_at.astimezone(BERLIN).time() == datetime.time(9, 0)
    assert on.ends_at - on.starts_at == datetime.timedelta(minutes=20)
    assert on.starts_at.utcoffset() == datetime.timedelta(0)  # stored in UTC
    assert on.starts_at.time() == datetime.time(9 - offset_on, 0)
    assert before.starts_at.time() == datetime.time(9 - offset_before, 0)
    assert (
        on.starts_at.astimezone(BERLIN).utcoffset()
        != before.starts_at.astimezone(BERLIN).utcoffset()
    )


@pytest.mark.parametrize("day", [datetime.date(2027, 3, 28), datetime.date(2027, 10, 31)])
def test_night_hours_across_the_change_give_slots_that_never_overlap(day):
    """The hour skipped in March has no slots; the hour repeated in October is used once."""
    slots = wall_clock_slots(
        day=day, start=datetime.time(1, 0), end=datetime.time(4, 0), minutes=30, zone=BERLIN
    )

    local_starts = [s.starts_at.astimezone(BERLIN).strftime("%H:%M") for s in slots]
    if day.month == 3:
        assert local_starts == ["01:00", "01:30", "03:00", "03:30"]
    else:
        assert local_starts == ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    for earlier, later in itertools.pairwise(slots):
        assert earlier.ends_at <= later.starts_at
    assert all(s.ends_at - s.starts_at == datetime.timedelta(minutes=30) for s in slots)


def test_specialty_names_follow_the_language():
    dermatology = specialty_get("dermatologie")
    with translation.override("de"):
        assert dermatology.name == "Dermatologie"
    with translation.override("en"):
        assert dermatology.name == "Dermatology"
