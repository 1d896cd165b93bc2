"""Moving an appointment (issue 19, decision 0021): to another free time of the same
practitioner and visit motive, until the clinic's cut-off, all or none; the old slots are free
and offered to the waitlist; the calendar file keeps its UID with a rising SEQUENCE; audited."""

import datetime

import pytest
import time_machine
from django.utils import timezone
from icalendar import Calendar

from audit.models import AuditAction, AuditEvent
from booking.calendar import appointment_ics
from booking.models import Appointment, AppointmentSlot, AppointmentStatus, Slot, WaitlistOffer
from booking.services import appointment_book, appointment_cancel, appointment_move, move_targets
from booking.tests.factories import (
    bearer,
    days_ahead,
    post_json,
    practitioner_create,
    slot_create,
    token_for,
)
from booking.tests.test_motives import booked_flags, motive_create, row_of_slots
from booking.waitlist import waitlist_join
from patterm.errors import Conflict, DomainError, NotFound
from vault import relatives

pytestmark = pytest.mark.django_db


def moved_ics(appointment) -> dict:
    """METHOD, UID, SEQUENCE and DTSTART of the appointment's calendar file, parsed."""
    appointment = Appointment.objects.select_related(
        "slot__clinic", "slot__practitioner", "slot__specialty", "patient", "booked_by"
    ).get(pk=appointment.pk)
    calendar = Calendar.from_ical(appointment_ics(appointment))
    (event,) = calendar.walk("VEVENT")
    return {
        "method": str(calendar["METHOD"]),
        "uid": str(event["UID"]),
        "sequence": int(event["SEQUENCE"]),
        "start": event.decoded("DTSTART"),
        "end": event.decoded("DTEND"),
        "status": str(event["STATUS"]),
        "attendee": str(event.get("ATTENDEE", "")),
    }


def code_of(call) -> tuple[int, str]:
    with pytest.raises(DomainError) as raised:
        call()
    return raised.value.status, raised.value.code


# --- The calendar file across book, move, move, cancel ----------------------------------------


def test_book_move_move_cancel_keeps_the_uid_and_raises_the_sequence_every_time(
    doctor, patient, sent_mails
):
    first, second, third = (slot_create(practitioner=doctor) for _ in range(3))
    me, pk = patient.user, None
    pk = appointment_book(patient=me, slot_id=first.public_id).pk
    sent_mails()  # each change's mail goes out before the next change
    files = [moved_ics(Appointment(pk=pk))]
    for target in (second, third):
        appointment_move(actor=me, appointment_id=pk, slot_id=target.public_id)
        sent_mails()
        files.append(moved_ics(Appointment(pk=pk)))
    appointment_cancel(actor=me, appointment_id=pk)
    mailoutbox = sent_mails()
    files.append(moved_ics(Appointment(pk=pk)))

    assert [f["method"] for f in files] == ["PUBLISH", "REQUEST", "REQUEST", "CANCEL"]
    assert [f["sequence"] for f in files] == [0, 1, 2, 3]
    assert len({f["uid"] for f in files}) == 1
    assert [f["start"] for f in files] == [
        first.starts_at,
        second.starts_at,
        third.starts_at,
        third.starts_at,
    ]
    assert [f["status"] for f in files] == ["CONFIRMED", "CONFIRMED", "CONFIRMED", "CANCELLED"]
    # iTIP's REQUEST names the attendee it updates: the patient's address, never a name.
    assert files[1]["attendee"] == f"mailto:{patient.user.email}"
    # Each e-mail attaches the file of its revision: booked, moved twice, cancelled.
    attached = [Calendar.from_ical(mail.attachments[0][1]) for mail in mailoutbox]
    assert [str(c["METHOD"]) for c in attached] == ["PUBLISH", "REQUEST", "REQUEST", "CANCEL"]
    assert [int(c.walk("VEVENT")[0]["SEQUENCE"]) for c in attached] == [0, 1, 2, 3]
    assert mailoutbox[1].attachments[0][2].startswith("text/calendar; method=REQUEST")


def test_the_move_e_mail_says_the_new_time_and_holds_nothing_private(
    doctor, make_patient, sent_mails
):
    patient = make_patient(first_name="Zora", last_name="Quendel")
    first, second = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, reason="Zqxgrund Schmerzen"
    )
    sent_mails().clear()  # the confirmation

    appointment_move(actor=patient.user, appointment_id=appointment.pk, slot_id=second.public_id)

    (message,) = sent_mails()
    assert message.to == [patient.user.email]
    assert timezone.localtime(second.starts_at).strftime("%d.%m.%Y") in message.subject
    assert timezone.localtime(second.starts_at).strftime("%H:%M") in message.body
    text = message.subject + message.body + str(message.attachments[0][1])
    for private in ("Zora", "Quendel", "1984", "Zqxgrund"):
        assert private not in text


# --- What moves, and what does not ----------------------------------------------------------


def test_a_move_frees_the_old_slot_claims_the_new_one_and_is_audited(doctor, patient):
    old, new = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=patient.user, slot_id=old.public_id)

    moved = appointment_move(
        actor=patient.user, appointment_id=appointment.pk, slot_id=new.public_id
    )

    assert moved.pk == appointment.pk and moved.slot_id == new.pk
    assert (moved.starts_at, moved.ends_at) == (new.starts_at, new.ends_at)
    assert booked_flags([old, new]) == [False, True]
    active = AppointmentSlot.objects.filter(appointment=appointment, is_active=True)
    assert list(active.values_list("slot_id", flat=True)) == [new.pk]
    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_MOVE)
    assert event.actor_id == patient.user.pk and event.object_id == str(appointment.pk)
    assert event.details == {
        "from_slot": old.public_id,
        "slot": new.public_id,
        "slots": 1,
        "by": "patient",
    }


def test_a_two_slot_motive_moves_by_one_slot_keeping_the_slot_it_shares(doctor, patient):
    motive = motive_create(doctor, duration_minutes=40)
    a, b, c = row_of_slots(doctor, 3)
    appointment = appointment_book(patient=patient.user, slot_id=a.public_id, motive_id=motive.pk)

    moved = appointment_move(actor=patient.user, appointment_id=appointment.pk, slot_id=b.public_id)

    assert booked_flags([a, b, c]) == [False, True, True]
    assert moved.ends_at == b.starts_at + datetime.timedelta(minutes=40)
    active = AppointmentSlot.objects.filter(appointment=appointment, is_active=True)
    assert sorted(active.values_list("slot_id", flat=True)) == [b.pk, c.pk]


def test_a_motive_that_does_not_fit_at_the_new_time_changes_nothing(doctor, patient):
    motive = motive_create(doctor, duration_minutes=40)
    a, b = row_of_slots(doctor, 2)
    lonely = slot_create(practitioner=doctor, starts_at=days_ahead(5, 9))
    appointment = appointment_book(patient=patient.user, slot_id=a.public_id, motive_id=motive.pk)

    assert code_of(
        lambda: appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=lonely.public_id
        )
    ) == (409, "motive_does_not_fit")
    assert booked_flags([a, b, lonely]) == [True, True, False]


def test_a_slot_taken_by_someone_else_is_409_and_nothing_changes(doctor, patient, make_patient):
    mine, theirs = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=patient.user, slot_id=mine.public_id)
    appointment_book(patient=make_patient().user, slot_id=theirs.public_id)

    assert code_of(
        lambda: appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=theirs.public_id
        )
    ) == (409, "slot_taken")
    appointment.refresh_from_db()
    assert appointment.slot_id == mine.pk and appointment.moves == 0
    assert booked_flags([mine, theirs]) == [True, True]
    assert not AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_MOVE).exists()


def test_the_cut_off_ends_moving_online_with_too_late_to_move(doctor, patient, clinic):
    clinic.cancellation_cutoff_hours = 24
    clinic.save()
    soon = slot_create(practitioner=doctor, starts_at=days_ahead(2, 10))
    later = slot_create(practitioner=doctor, starts_at=days_ahead(6, 10))
    appointment = appointment_book(patient=patient.user, slot_id=soon.public_id)

    with time_machine.travel(soon.starts_at - datetime.timedelta(hours=23), tick=False):
        result = code_of(
            lambda: appointment_move(
                actor=patient.user, appointment_id=appointment.pk, slot_id=later.public_id
            )
        )

    assert result == (409, "too_late_to_move")
    assert booked_flags([soon, later]) == [True, False]


def test_another_practitioners_slot_is_a_field_error(doctor, patient, clinic):
    colleague = practitioner_create(clinic=clinic)
    mine, elsewhere = slot_create(practitioner=doctor), slot_create(practitioner=colleague)
    appointment = appointment_book(patient=patient.user, slot_id=mine.public_id)

    with pytest.raises(DomainError) as raised:
        appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=elsewhere.public_id
        )

    assert (raised.value.status, raised.value.code) == (422, "validation_error")
    assert raised.value.errors[0]["field"] == "slot_id"


def test_the_same_time_a_cancelled_appointment_and_a_past_slot_are_refused(doctor, patient):
    mine, other = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    past = slot_create(
        practitioner=doctor, starts_at=days_ahead(-1, 9).replace(second=0, microsecond=0)
    )
    appointment = appointment_book(patient=patient.user, slot_id=mine.public_id)

    def move(slot):
        return lambda: appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=slot.public_id
        )

    assert code_of(move(mine)) == (409, "same_time")
    assert code_of(move(past)) == (409, "slot_in_past")
    appointment_cancel(actor=patient.user, appointment_id=appointment.pk)
    assert code_of(move(other)) == (409, "not_movable")


def test_a_motive_no_longer_bookable_online_cannot_be_moved_online(doctor, patient):
    motive = motive_create(doctor, duration_minutes=20)
    first, second = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, motive_id=motive.pk
    )
    motive.bookable_online = False
    motive.save()

    assert code_of(
        lambda: appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=second.public_id
        )
    ) == (422, "motive_not_online")


def test_a_new_patients_only_motive_still_moves_for_the_patient_who_booked_it(doctor, patient):
    """Booking made the patient known to the clinic; the move does not ask again."""
    motive = motive_create(doctor, duration_minutes=20, patients="new")
    first, second = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(
        patient=patient.user, slot_id=first.public_id, motive_id=motive.pk
    )

    moved = appointment_move(
        actor=patient.user, appointment_id=appointment.pk, slot_id=second.public_id
    )

    assert moved.slot_id == second.pk


def test_someone_elses_appointment_is_not_found_and_staff_cannot_move(
    doctor, patient, make_patient
):
    mine, other = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=patient.user, slot_id=mine.public_id)

    for stranger in (make_patient().user, doctor):
        with pytest.raises(NotFound):
            appointment_move(actor=stranger, appointment_id=appointment.pk, slot_id=other.public_id)
    assert booked_flags([mine, other]) == [True, False]


def test_a_holder_moves_their_relatives_appointment(doctor, make_patient, sent_mails):
    holder = make_patient(email="mutter@example.com").user
    child = relatives.relative_add(
        holder=holder,
        first_name="Lena",
        last_name="Mustermann",
        date_of_birth=datetime.date.today().replace(year=datetime.date.today().year - 6),
    )
    first, second = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=child.user, actor=holder, slot_id=first.public_id)
    sent_mails().clear()  # the confirmation
    appointment_move(actor=holder, appointment_id=appointment.pk, slot_id=second.public_id)
    mailoutbox = sent_mails()

    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_MOVE)
    assert event.details["by"] == "holder" and event.details["bases"] == ["holder"]
    assert [mail.to for mail in mailoutbox] == [[holder.email]]
    assert moved_ics(appointment)["attendee"] == f"mailto:{holder.email}"


def test_the_freed_slot_is_offered_to_the_first_patient_waiting(doctor, patient, make_patient):
    old, new = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=patient.user, slot_id=old.public_id)
    waiting = make_patient().user
    waitlist_join(patient=waiting, specialty="allgemeinmedizin")

    appointment_move(actor=patient.user, appointment_id=appointment.pk, slot_id=new.public_id)

    offer = WaitlistOffer.objects.get(entry__patient=waiting)
    assert offer.slot_id == old.pk
    old.refresh_from_db()
    assert old.held_for_id == waiting.pk and not old.is_booked
    event = AuditEvent.objects.get(action=AuditAction.WAITLIST_OFFER)
    assert event.details["cause"] == "move"


def test_a_moved_appointment_is_reminded_again_before_its_new_time(doctor, patient, clinic):
    from booking.models import SentReminder
    from booking.reminders import reminders_due

    clinic.reminder_hours = "48"
    clinic.save()
    old = slot_create(practitioner=doctor, starts_at=days_ahead(3, 9))
    new = slot_create(practitioner=doctor, starts_at=days_ahead(6, 9))
    appointment = appointment_book(patient=patient.user, slot_id=old.public_id)
    SentReminder.objects.create(appointment=appointment, hours_before=48)  # sent for the old

    appointment_move(actor=patient.user, appointment_id=appointment.pk, slot_id=new.public_id)

    due = reminders_due(now=new.starts_at - datetime.timedelta(hours=47))
    assert [(item.pk, hours) for item, hours in due] == [(appointment.pk, 48)]


def test_move_targets_list_the_practitioners_free_times_where_the_motive_fits(doctor, patient):
    motive = motive_create(doctor, duration_minutes=40)
    a, _ = row_of_slots(doctor, 2, day=4)
    c, d = row_of_slots(doctor, 2, day=5)
    lonely = slot_create(practitioner=doctor, starts_at=days_ahead(6, 9))
    slot_create(practitioner=practitioner_create(), starts_at=days_ahead(6, 11))
    appointment = appointment_book(patient=patient.user, slot_id=a.public_id, motive_id=motive.pk)

    targets = move_targets(appointment)

    assert [slot.pk for slot in targets] == [c.pk]
    assert lonely not in targets and d not in targets


# --- The API --------------------------------------------------------------------------------


def test_post_move_answers_the_moved_appointment_and_errors_with_their_codes(
    api_client, doctor, patient, make_patient
):
    first, second, taken = (slot_create(practitioner=doctor) for _ in range(3))
    appointment = appointment_book(patient=patient.user, slot_id=first.public_id)
    appointment_book(patient=make_patient().user, slot_id=taken.public_id)
    url = f"/api/appointments/{appointment.pk}/move"

    moved = post_json(api_client, url, {"slot_id": second.public_id}, patient)
    conflict = post_json(api_client, url, {"slot_id": taken.public_id}, patient)
    unknown = post_json(api_client, url, {"slot_id": "nope"}, patient)
    stranger = post_json(api_client, url, {"slot_id": first.public_id}, make_patient())
    staff = post_json(api_client, url, {"slot_id": first.public_id}, token_for(doctor))
    empty = post_json(api_client, url, {}, patient)

    assert moved.status_code == 200
    assert moved.json()["id"] == str(appointment.pk)
    assert moved.json()["slot"]["id"] == second.public_id
    assert (conflict.status_code, conflict.json()["code"]) == (409, "slot_taken")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "slot_not_found")
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")
    assert (staff.status_code, staff.json()["code"]) == (403, "not_a_patient")
    assert (empty.status_code, empty.json()["code"]) == (422, "validation_error")
    ics = api_client.get(f"/api/appointments/{appointment.pk}/ics", **bearer(patient))
    assert b"METHOD:REQUEST" in ics.content and b"SEQUENCE:1" in ics.content


def test_a_moved_appointment_is_still_one_booked_appointment(doctor, patient):
    first, second = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
    appointment = appointment_book(patient=patient.user, slot_id=first.public_id)

    appointment_move(actor=patient.user, appointment_id=appointment.pk, slot_id=second.public_id)

    assert Appointment.objects.filter(patient=patient.user).count() == 1
    assert Appointment.objects.get().status == AppointmentStatus.BOOKED
    assert Slot.objects.filter(is_booked=True).count() == 1
    with pytest.raises(Conflict):
        appointment_book(patient=patient.user, slot_id=second.public_id)


# --- The page -------------------------------------------------------------------------------


def test_the_move_page_lists_the_free_times_and_moves_with_a_post(
    client, doctor, patient, make_patient
):
    from django.urls import reverse

    mine, free, taken = (slot_create(practitioner=doctor) for _ in range(3))
    slot_create(practitioner=practitioner_create())  # another practitioner's: not offered
    appointment = appointment_book(patient=patient.user, slot_id=mine.public_id)
    client.force_login(patient.user)
    detail = reverse("booking:appointment", kwargs={"appointment_id": appointment.pk})
    url = reverse("booking:move", kwargs={"appointment_id": appointment.pk})

    assert url in client.get(detail).text  # the appointment page links to it
    page = client.get(url)
    listed = [slot.public_id for _, slots in page.context["days"] for slot in slots]
    assert page.status_code == 200 and "Termin verschieben" in page.text
    assert listed == [free.public_id, taken.public_id]

    appointment_book(patient=make_patient().user, slot_id=taken.public_id)  # meanwhile
    refused = client.post(url, {"slot_id": taken.public_id})
    moved = client.post(url, {"slot_id": free.public_id}, follow=True)

    assert refused.status_code == 409
    assert "gerade von jemand anderem gebucht" in refused.text
    assert moved.redirect_chain[-1][0] == detail
    assert "Ihr Termin ist verschoben" in moved.text
    appointment.refresh_from_db()
    assert appointment.slot_id == free.pk


def test_someone_elses_move_page_is_not_found(client, doctor, patient, make_patient):
    from django.urls import reverse

    appointment = appointment_book(
        patient=patient.user, slot_id=slot_create(practitioner=doctor).public_id
    )
    client.force_login(make_patient().user)
    url = reverse("booking:move", kwargs={"appointment_id": appointment.pk})

    assert client.get(url).status_code == 404
    assert client.post(url, {"slot_id": "x"}).status_code == 404


def test_the_move_page_and_its_refusals_speak_english_too(client, doctor, patient, clinic):
    from django.urls import reverse

    clinic.cancellation_cutoff_hours = 72  # the appointment is two days ahead: too late
    clinic.save()
    soon = slot_create(practitioner=doctor, starts_at=days_ahead(2, 10))
    later = slot_create(practitioner=doctor, starts_at=days_ahead(6, 10))
    appointment = appointment_book(patient=patient.user, slot_id=soon.public_id)
    client.force_login(patient.user)
    url = reverse("booking:move", kwargs={"appointment_id": appointment.pk})

    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    refused = client.post(url, {"slot_id": later.public_id}, HTTP_ACCEPT_LANGUAGE="en")

    assert "Move appointment" in page.text
    assert "Online moving is no longer possible" in page.text
    assert 'name="slot_id"' not in page.text
    assert refused.status_code == 409
    assert "can be moved online until 72 hours before" in refused.text
