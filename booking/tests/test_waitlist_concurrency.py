"""Twenty confirmations, bookings and expiry runs at once around one freed slot: at most one
active appointment, never for someone the slot is not held for, and no error but clean conflicts.
Real threads and transactions, on PostgreSQL and the file SQLite database."""

import datetime
import threading
from collections import Counter

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from booking.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    Slot,
    WaitlistOffer,
)
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import practitioner_create, slot_create
from booking.tests.test_concurrency import BOTH_DATABASES, attempt_booking, run_together
from booking.waitlist import offer_confirm, offers_expire, waitlist_join
from patterm.errors import Conflict

THREADS = 20


def attempt_confirm(patient, offer_id) -> str:
    try:
        offer_confirm(patient=patient, offer_id=offer_id)
    except Conflict as conflict:
        return conflict.code
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "booked"


def attempt_expiry() -> str:
    try:
        offers_expire()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "processed"


def race(targets: list) -> Counter:
    """Run the targets together (a barrier starts them at once); their outcomes."""
    barrier = threading.Barrier(len(targets))
    outcomes: list[str] = []

    def wrap(target):
        def run():
            connection.ensure_connection()
            barrier.wait(timeout=60)
            outcomes.append(target())

        return run

    assert run_together([wrap(target) for target in targets]) == []
    return Counter(outcomes)


def freed_slot_offered(make_patient, waiting: int):
    """A booked slot, `waiting` patients on the waitlist, then the cancellation: the slot is
    held for the first of them. Returns (slot, the waiting patients, the first one's offer)."""
    slot = slot_create(practitioner=practitioner_create())
    owner = make_patient().user
    appointment = appointment_book(patient=owner, slot_id=slot.public_id)
    patients = [make_patient().user for _ in range(waiting)]
    for patient in patients:
        waitlist_join(patient=patient, specialty="allgemeinmedizin")
    appointment_cancel(actor=owner, appointment_id=appointment.pk)
    offer = WaitlistOffer.objects.get(status=OfferStatus.OPEN)
    assert offer.entry.patient == patients[0]
    return slot, patients, offer


def booked_on(slot) -> list[Appointment]:
    return list(Appointment.objects.filter(slot=slot, status=AppointmentStatus.BOOKED))


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_confirmations_and_bookings_of_a_held_slot_give_the_holder_one_appointment(
    vendor, make_patient
):
    assert connection.vendor == vendor
    slot, (holder, *_), offer = freed_slot_offered(make_patient, waiting=2)
    others = [make_patient().user for _ in range(THREADS // 2)]

    outcomes = race(
        [lambda: attempt_confirm(holder, offer.pk)] * (THREADS // 2)
        + [lambda other=other: attempt_booking(other, slot.public_id)[0] for other in others]
    )

    assert outcomes["booked"] == 1, outcomes
    assert set(outcomes) <= {"booked", "slot_taken", "offer_closed", "overlapping_appointment"}
    assert [appointment.patient for appointment in booked_on(slot)] == [holder]
    slot.refresh_from_db()
    assert (slot.is_booked, slot.held_for, slot.held_until) == (True, None, None)
    offer.refresh_from_db()
    assert offer.status == OfferStatus.CONFIRMED


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_when_the_hold_ends_during_the_rush_the_slot_goes_to_the_next_in_line_only(
    vendor, make_patient
):
    assert connection.vendor == vendor
    slot, (holder, second, _third), offer = freed_slot_offered(make_patient, waiting=3)
    others = [make_patient().user for _ in range(THREADS - 10)]

    after_hold = offer.expires_at + datetime.timedelta(seconds=1)
    with time_machine.travel(after_hold, tick=False):
        outcomes = race(
            [attempt_expiry] * 5
            + [lambda: attempt_confirm(holder, offer.pk)] * 5
            + [lambda other=other: attempt_booking(other, slot.public_id)[0] for other in others]
        )
        now = timezone.now()

    # Nobody books it: the holder was too late and the next in line has it now.
    assert set(outcomes) <= {"processed", "offer_expired", "slot_taken"}, outcomes
    assert outcomes["offer_expired"] == 5
    assert booked_on(slot) == []
    slot.refresh_from_db()
    assert (slot.is_booked, slot.held_for) == (False, second)
    assert slot.held_until > now
    (passed_on,) = WaitlistOffer.objects.filter(status=OfferStatus.OPEN)
    assert passed_on.entry.patient == second
    offer.refresh_from_db()
    assert offer.status == OfferStatus.EXPIRED
    # And the next in line's confirmation, raced by everyone else's bookings, wins once.
    outcomes = race(
        [lambda: attempt_confirm(second, passed_on.pk)] * 5
        + [lambda other=other: attempt_booking(other, slot.public_id)[0] for other in others]
    )
    assert outcomes["booked"] == 1, outcomes
    assert [appointment.patient for appointment in booked_on(slot)] == [second]
    assert not Slot.objects.filter(pk=slot.pk, held_for__isnull=False).exists()
