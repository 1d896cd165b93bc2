"""Visit motives (issue 16): a motive takes exactly the slots its duration needs, all or none;
cancelling frees them all; the motive's rules (online, new/known patients, insurance) are
checked at booking with a clear error and nothing stored; clinic admins manage them."""

import datetime

import pytest

from accounts.models import Role
from audit.models import AuditAction, AuditEvent
from booking.models import (
    Appointment,
    AppointmentSlot,
    AppointmentStatus,
    MotivePatients,
    Slot,
    VisitMotive,
    WaitlistOffer,
)
from booking.services import appointment_book, appointment_cancel, motive_add, motive_remove
from booking.tests.factories import (
    bearer,
    book,
    days_ahead,
    membership_of,
    practitioner_create,
    slot_create,
    specialty_get,
    staff_create,
    token_for,
)
from booking.waitlist import waitlist_join
from consent.models import CareRelationship, CareSource
from patterm.errors import Conflict, DomainError, NotFound
from vault.models import PatientProfile

pytestmark = pytest.mark.django_db


def motive_create(practitioner, **fields) -> VisitMotive:
    membership = membership_of(practitioner)
    defaults = {
        "specialty": specialty_get("allgemeinmedizin"),
        "name_de": "Erstuntersuchung",
        "name_en": "First examination",
        "duration_minutes": 40,
    }
    return VisitMotive.objects.create(membership=membership, **{**defaults, **fields})


def row_of_slots(practitioner, count: int, *, day: int = 4, hour: int = 9, minutes: int = 20):
    """`count` back-to-back slots of `minutes` from `hour` on, `day` days ahead."""
    start = days_ahead(day, hour)
    return [
        slot_create(
            practitioner=practitioner,
            starts_at=start + datetime.timedelta(minutes=minutes * n),
            minutes=minutes,
        )
        for n in range(count)
    ]


def booked_flags(slots) -> list[bool]:
    flags = dict(Slot.objects.filter(pk__in=[s.pk for s in slots]).values_list("pk", "is_booked"))
    return [flags[s.pk] for s in slots]


# --- Durations onto slots -------------------------------------------------------------------


def test_a_40_minute_motive_on_a_20_minute_grid_takes_two_consecutive_slots(doctor, patient):
    first, second, third = row_of_slots(doctor, 3)
    motive = motive_create(doctor, duration_minutes=40)

    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, motive_id=motive.pk
    )

    assert booked_flags([first, second, third]) == [True, True, False]
    assert appointment.slot == first
    assert appointment.motive == motive
    assert appointment.ends_at - appointment.starts_at == datetime.timedelta(minutes=40)
    assert sorted(appointment.occupied_slots.values_list("slot_id", flat=True)) == [
        first.pk,
        second.pk,
    ]
    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_BOOK)
    assert event.details == {"slot": first.public_id, "motive": motive.pk, "slots": 2}


def test_a_30_minute_motive_takes_two_slots_but_lasts_30_minutes(doctor, patient):
    first, second = row_of_slots(doctor, 2)
    motive = motive_create(doctor, duration_minutes=30)

    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, motive_id=motive.pk
    )

    assert booked_flags([first, second]) == [True, True]
    assert appointment.ends_at == first.starts_at + datetime.timedelta(minutes=30)


def test_a_short_motive_takes_one_slot(doctor, patient):
    first, second = row_of_slots(doctor, 2)
    motive = motive_create(doctor, duration_minutes=10, name_de="Kontrolle")

    appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)

    assert booked_flags([first, second]) == [True, False]


def test_a_motive_that_does_not_fit_is_refused_and_claims_nothing(doctor, patient):
    first, second = row_of_slots(doctor, 2)
    motive = motive_create(doctor, duration_minutes=60)

    with pytest.raises(Conflict) as refused:
        appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)

    assert refused.value.code == "motive_does_not_fit"
    assert booked_flags([first, second]) == [False, False]
    assert not Appointment.objects.exists()


def test_a_gap_between_slots_is_no_consecutive_time(doctor, patient):
    first = slot_create(practitioner=doctor, starts_at=days_ahead(4, 9))
    slot_create(practitioner=doctor, starts_at=days_ahead(4, 9, 40))  # 20 minutes later
    motive = motive_create(doctor, duration_minutes=40)

    with pytest.raises(Conflict) as refused:
        appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)

    assert refused.value.code == "motive_does_not_fit"


def test_a_taken_following_slot_rolls_back_the_first(doctor, patient, make_patient):
    first, second = row_of_slots(doctor, 2)
    appointment_book(patient=make_patient().user, slot_id=second.public_id)
    motive = motive_create(doctor, duration_minutes=40)

    with pytest.raises(Conflict) as refused:
        appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)

    assert refused.value.code == "slot_taken"
    assert booked_flags([first, second]) == [False, True]
    assert Appointment.objects.filter(patient=patient.user).count() == 0


def test_the_database_refuses_a_second_active_occupation_of_a_slot(doctor, patient, make_patient):
    from django.db import IntegrityError, transaction

    first, second = row_of_slots(doctor, 2)
    motive = motive_create(doctor, duration_minutes=40)
    appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)
    other = appointment_book(
        patient=make_patient().user, slot_id=row_of_slots(doctor, 1, day=6)[0].public_id
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        AppointmentSlot.objects.create(appointment_id=other.pk, slot=second)


def test_cancelling_frees_every_slot_and_offers_each_to_the_waitlist(doctor, patient, make_patient):
    first, second = row_of_slots(doctor, 2, day=6)
    motive = motive_create(doctor, duration_minutes=40)
    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, motive_id=motive.pk
    )
    waiting = [make_patient().user for _ in range(2)]
    for person in waiting:
        waitlist_join(patient=person, specialty="allgemeinmedizin")

    appointment_cancel(actor=patient.user, appointment_id=appointment.pk)

    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.CANCELLED
    assert not AppointmentSlot.objects.filter(appointment=appointment, is_active=True).exists()
    assert booked_flags([first, second]) == [False, False]
    assert sorted(WaitlistOffer.objects.values_list("slot_id", flat=True)) == [first.pk, second.pk]
    # Free again: the same motive can be booked there once more (the offers hold them).
    WaitlistOffer.objects.all().delete()
    Slot.objects.update(held_for=None, held_until=None)
    again = appointment_book(
        patient=make_patient().user, slot_id=first.public_id, motive_id=motive.pk
    )
    assert again.occupied_slots.count() == 2


def test_without_a_motive_a_booking_takes_one_slot_as_before(doctor, patient):
    first, second = row_of_slots(doctor, 2)
    motive_create(doctor, duration_minutes=40)

    appointment = appointment_book(patient=patient.user, slot_id=first.public_id)

    assert booked_flags([first, second]) == [True, False]
    assert appointment.motive is None


def test_a_patient_cannot_book_an_overlapping_second_motive(doctor, patient, clinic):
    first, second = row_of_slots(doctor, 2)
    colleague = practitioner_create(clinic=clinic)
    at_second = slot_create(practitioner=colleague, starts_at=second.starts_at)
    motive = motive_create(doctor, duration_minutes=40)
    appointment_book(patient=patient.user, slot_id=first.public_id, motive_id=motive.pk)

    with pytest.raises(Conflict) as refused:
        appointment_book(patient=patient.user, slot_id=at_second.public_id)

    assert refused.value.code == "overlapping_appointment"


# --- The motive's rules ---------------------------------------------------------------------


def refusal(**kwargs) -> tuple[str, list[str]]:
    with pytest.raises(DomainError) as refused:
        appointment_book(**kwargs)
    return refused.value.code, [e["field"] for e in refused.value.errors]


def test_a_motive_of_another_practitioner_is_refused(doctor, patient, clinic):
    (slot,) = row_of_slots(doctor, 1)
    colleague = practitioner_create(clinic=clinic)
    motive = motive_create(colleague, duration_minutes=20)

    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=motive.pk) == (
        "motive_not_offered",
        ["motive_id"],
    )
    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=999_999) == (
        "motive_not_offered",
        ["motive_id"],
    )
    assert not Appointment.objects.exists()
    assert Slot.objects.get(pk=slot.pk).is_booked is False


def test_a_motive_of_the_same_practitioner_at_another_clinic_is_refused(patient):
    doctor = practitioner_create()
    (slot,) = row_of_slots(doctor, 1)
    elsewhere = staff_create(clinic=slot.clinic, role=Role.CLINIC_ADMIN)  # noqa: F841
    from accounts.models import Membership
    from accounts.tests.factories import ClinicFactory
    from booking.models import PractitionerSpecialty

    other = Membership.objects.create(user=doctor, clinic=ClinicFactory(), role=Role.PRACTITIONER)
    PractitionerSpecialty.objects.create(membership=other, specialty=specialty_get())
    motive = VisitMotive.objects.create(
        membership=other, specialty=specialty_get(), name_de="A", name_en="A", duration_minutes=20
    )

    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=motive.pk)[0] == (
        "motive_not_offered"
    )


def test_a_motive_not_bookable_online_is_refused(doctor, patient):
    (slot,) = row_of_slots(doctor, 1)
    motive = motive_create(doctor, duration_minutes=20, bookable_online=False)

    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=motive.pk) == (
        "motive_not_online",
        ["motive_id"],
    )


def test_new_and_known_patients(doctor, patient, clinic):
    (slot, later) = row_of_slots(doctor, 2, minutes=60)
    known_only = motive_create(doctor, duration_minutes=20, patients=MotivePatients.KNOWN)
    new_only = motive_create(doctor, duration_minutes=20, patients=MotivePatients.NEW)

    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=known_only.pk) == (
        "motive_known_patients_only",
        ["motive_id"],
    )
    appointment_book(patient=patient.user, slot_id=slot.public_id, motive_id=new_only.pk)
    # Now in care at the clinic (the booking recorded it): known.
    assert CareRelationship.objects.filter(patient=patient.user, clinic=clinic).exists()
    assert refusal(patient=patient.user, slot_id=later.public_id, motive_id=new_only.pk) == (
        "motive_new_patients_only",
        ["motive_id"],
    )
    appointment_book(patient=patient.user, slot_id=later.public_id, motive_id=known_only.pk)


def set_insurance(patient, insurance_type):
    profile = PatientProfile.objects.get(patient=patient)
    profile.insurance_type = insurance_type
    profile.save()


def test_insurance_types_the_motive_does_not_accept_are_refused(doctor, patient):
    (slot,) = row_of_slots(doctor, 1)
    statutory_only = motive_create(
        doctor, duration_minutes=20, accepts_private=False, accepts_self_pay=False
    )

    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=statutory_only.pk) == (
        "insurance_type_required",
        ["insurance_type"],
    )
    set_insurance(patient.user, "privat")
    assert refusal(patient=patient.user, slot_id=slot.public_id, motive_id=statutory_only.pk) == (
        "insurance_not_accepted",
        ["insurance_type"],
    )
    assert refusal(
        patient=patient.user,
        slot_id=slot.public_id,
        motive_id=statutory_only.pk,
        insurance_type="nonsense",
    ) == ("insurance_type_unknown", ["insurance_type"])
    set_insurance(patient.user, "gesetzlich")
    appointment = appointment_book(
        patient=patient.user, slot_id=slot.public_id, motive_id=statutory_only.pk
    )
    assert Appointment.objects.get(pk=appointment.pk).patient_insurance_type == "gesetzlich"


def test_the_booking_may_name_another_insurance_type_than_the_profile(doctor, patient):
    (slot,) = row_of_slots(doctor, 1)
    self_pay_only = motive_create(
        doctor, duration_minutes=20, accepts_statutory=False, accepts_private=False
    )
    set_insurance(patient.user, "gesetzlich")

    appointment = appointment_book(
        patient=patient.user,
        slot_id=slot.public_id,
        motive_id=self_pay_only.pk,
        insurance_type="selbstzahler",
    )

    assert appointment.patient_insurance_type == "selbstzahler"


def test_the_api_answers_a_broken_rule_with_detail_code_and_field(api_client, doctor, patient):
    (slot,) = row_of_slots(doctor, 1)
    motive = motive_create(doctor, duration_minutes=20, bookable_online=False)

    response = book(api_client, patient, slot, motive_id=motive.pk)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "motive_not_online"
    assert body["detail"]
    assert body["errors"][0]["field"] == "motive_id"
    assert not Appointment.objects.exists()


def test_the_api_books_a_motive_and_shows_it(api_client, doctor, patient, clinic):
    first, _second = row_of_slots(doctor, 2)
    motive = motive_create(doctor, duration_minutes=40, accepts_private=False)

    response = book(api_client, patient, first, motive_id=motive.pk, insurance_type="gesetzlich")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["motive"] == {"id": motive.pk, "name": "Erstuntersuchung", "duration_minutes": 40}
    assert datetime.datetime.fromisoformat(body["ends_at"]) == first.starts_at + datetime.timedelta(
        minutes=40
    )
    admin = staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)
    schedule = api_client.get(
        "/api/medical/schedule?date_from=" + str(first.starts_at.date()), **bearer(token_for(admin))
    )
    (row,) = [r for r in schedule.json() if r["id"] == body["id"]]
    assert row["patient"]["insurance_type"] == "gesetzlich"


# --- Managing motives -----------------------------------------------------------------------


def test_a_clinic_admin_adds_and_removes_motives_of_their_clinic_only(doctor, clinic, patient):
    admin = staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)
    stranger = practitioner_create()
    fields = {"name_de": "Impfung", "name_en": "Vaccination", "duration_minutes": 10}

    motive = motive_add(
        actor=admin, membership_id=membership_of(doctor).pk, specialty=specialty_get(), **fields
    )
    with pytest.raises(NotFound):
        motive_add(
            actor=admin,
            membership_id=membership_of(stranger).pk,
            specialty=specialty_get(),
            **fields,
        )
    from patterm.errors import InvalidInput

    with pytest.raises(InvalidInput) as bad:
        motive_add(
            actor=admin,
            membership_id=membership_of(doctor).pk,
            specialty=specialty_get("kardiologie"),
            **fields,
        )
    assert [e["field"] for e in bad.value.errors] == ["specialty"]
    with pytest.raises(InvalidInput):
        motive_add(
            actor=admin,
            membership_id=membership_of(doctor).pk,
            specialty=specialty_get(),
            **{**fields, "duration_minutes": 2},
        )

    (slot,) = row_of_slots(doctor, 1)
    appointment_book(patient=patient.user, slot_id=slot.public_id, motive_id=motive.pk)
    with pytest.raises(Conflict) as in_use:
        motive_remove(actor=admin, motive_id=motive.pk)
    assert in_use.value.code == "motive_in_use"
    unused = motive_add(
        actor=admin, membership_id=membership_of(doctor).pk, specialty=specialty_get(), **fields
    )
    motive_remove(actor=admin, motive_id=unused.pk)
    assert not VisitMotive.objects.filter(pk=unused.pk).exists()
    assert CareSource.BOOKING  # the booking above recorded the care relationship
