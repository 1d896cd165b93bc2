"""Reminders: due at the clinic's hour marks, sent once by `send_reminders` however often and
however many times at once it runs, none for cancelled appointments or closed accounts, and
mails that hold the time, clinic, address and links but nothing personal or medical."""

import datetime
import threading
from io import StringIO

import pytest
import time_machine
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from booking.models import SentReminder
from booking.reminders import due_mark, reminders_send
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import practitioner_create, slot_create
from booking.tests.test_concurrency import BOTH_DATABASES, run_together
from vault.services import patient_erase

REASON = "Zqxgrund Atemnot beim Treppensteigen"
HOUR = datetime.timedelta(hours=1)


def send_reminders(*args) -> str:
    out = StringIO()
    call_command("send_reminders", *args, stdout=out, stderr=out)
    return out.getvalue()


def booked_ahead(make_patient, *, hours: float, clinic=None, **patient_fields):
    """An appointment `hours` from now, booked now (with a reason for the visit)."""
    doctor = practitioner_create(clinic=clinic)
    starts_at = (timezone.now() + datetime.timedelta(hours=hours)).replace(microsecond=0)
    slot = slot_create(practitioner=doctor, starts_at=starts_at)
    patient = make_patient(**patient_fields).user
    return appointment_book(patient=patient, slot_id=slot.public_id, reason=REASON)


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("the mail server is down")


# --- When a reminder is due ------------------------------------------------------------------


@pytest.mark.django_db
def test_each_mark_is_due_from_its_time_until_the_next_smaller_mark(make_patient):
    appointment = booked_ahead(make_patient, hours=100)
    start = appointment.starts_at
    minute = datetime.timedelta(minutes=1)

    assert due_mark(appointment, start - 48 * HOUR - minute) is None
    assert due_mark(appointment, start - 48 * HOUR) == 48
    assert due_mark(appointment, start - 2 * HOUR - minute) == 48
    assert due_mark(appointment, start - 2 * HOUR) == 2
    assert due_mark(appointment, start - minute) == 2
    assert due_mark(appointment, start) is None


@pytest.mark.django_db
def test_a_booking_made_after_a_mark_gets_only_the_later_reminders(make_patient):
    appointment = booked_ahead(make_patient, hours=30)

    assert due_mark(appointment, appointment.starts_at - 29 * HOUR) is None
    assert due_mark(appointment, appointment.starts_at - 2 * HOUR) == 2


@pytest.mark.django_db
def test_a_clinic_sets_its_own_marks_or_none(make_patient, settings):
    appointment = booked_ahead(make_patient, hours=100)
    clinic = appointment.slot.clinic
    start = appointment.starts_at

    clinic.reminder_hours = "72, 24"
    assert due_mark(appointment, start - 72 * HOUR) == 72
    assert due_mark(appointment, start - 2 * HOUR) == 24
    clinic.reminder_hours = "0"
    assert due_mark(appointment, start - 2 * HOUR) is None
    clinic.reminder_hours = ""
    settings.PATTERM_REMINDER_HOURS = [6]
    assert due_mark(appointment, start - 2 * HOUR) == 6


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["48;2", "zwei", "-1", "48,0", "9999"])
def test_bad_reminder_hours_are_refused_by_validation(text):
    from django.core.exceptions import ValidationError

    from accounts.tests.factories import ClinicFactory

    clinic = ClinicFactory(reminder_hours=text)
    with pytest.raises(ValidationError) as refused:
        clinic.full_clean()
    assert "reminder_hours" in refused.value.message_dict


# --- Sending ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_reminders_sends_each_reminder_once(make_patient, mailoutbox):
    appointment = booked_ahead(make_patient, hours=49)
    start = appointment.starts_at
    first_mark = start - 48 * HOUR + datetime.timedelta(minutes=3)
    with time_machine.travel(first_mark, tick=False) as clock:
        assert "1 reminders sent" in send_reminders()
        assert "0 reminders sent" in send_reminders()  # idempotent
        clock.move_to(start - 2 * HOUR)
        assert "1 reminders sent" in send_reminders()
        assert "0 reminders sent" in send_reminders()
        clock.move_to(start + HOUR)
        assert "0 reminders sent" in send_reminders()

    assert [mail.to for mail in mailoutbox] == [[appointment.patient.email]] * 2
    assert sorted(SentReminder.objects.values_list("hours_before", flat=True)) == [2, 48]
    assert not SentReminder.objects.filter(sent_at=None).exists()
    events = AuditEvent.objects.filter(action=AuditAction.REMINDER_SEND)
    assert [event.details for event in events] == [{"hours_before": 48}, {"hours_before": 2}]
    for event in events:
        assert (event.object_type, event.object_id) == ("appointment", str(appointment.pk))
        assert event.subject_ref == subject_pseudonym(appointment.patient_id)
        assert event.clinic_id == appointment.slot.clinic_id
        assert event.actor_id is None


@pytest.mark.django_db
def test_the_reminder_holds_time_clinic_address_and_links_but_nothing_personal(
    make_patient, mailoutbox
):
    appointment = booked_ahead(
        make_patient, hours=3, first_name="Zqxvorname", last_name="Zqxnachname"
    )
    clinic = appointment.slot.clinic
    local_start = timezone.localtime(appointment.starts_at)
    with time_machine.travel(appointment.starts_at - HOUR, tick=False):
        send_reminders()

    (mail,) = mailoutbox
    assert f"{local_start:%d.%m.%Y}" in mail.subject
    assert f"{local_start:%H:%M}" in mail.body
    assert clinic.name in mail.body and clinic.address in mail.body
    # The portal's pages (a session), not the API (a bearer token a mail client lacks).
    assert f"/appointments/{appointment.pk}/ics/" in mail.body
    assert f"/appointments/{appointment.pk}/\n" in mail.body
    assert "/api/" not in mail.body
    text = mail.subject + mail.body
    for private in ("Zqxvorname", "Zqxnachname", "1984", REASON, "Zqxgrund", "Allgemein"):
        assert private not in text
    assert "Erinnerung" in mail.subject  # German by default
    assert "zu spät" in mail.body  # 1 hour ahead: past the clinic's 24-hour cut-off


@pytest.mark.django_db
def test_a_reminder_before_the_cut_off_says_until_when_to_cancel_online(make_patient, mailoutbox):
    appointment = booked_ahead(make_patient, hours=50)
    with time_machine.travel(appointment.starts_at - 47 * HOUR, tick=False):
        send_reminders()

    (mail,) = mailoutbox
    assert "bis 24 Stunden vor dem Termin" in mail.body
    assert "zu spät" not in mail.body


@pytest.mark.django_db
def test_the_reminder_is_in_the_patients_language(make_patient, mailoutbox):
    german = booked_ahead(make_patient, hours=3)
    english = booked_ahead(make_patient, hours=3.5, language="en")
    with time_machine.travel(english.starts_at - HOUR, tick=False):
        send_reminders()

    by_address = {mail.to[0]: mail for mail in mailoutbox}
    assert by_address[german.patient.email].subject.startswith("Erinnerung")
    assert by_address[english.patient.email].subject.startswith("Reminder")
    assert "Add it to your calendar" in by_address[english.patient.email].body


@pytest.mark.django_db
def test_no_reminder_for_a_cancelled_appointment_or_a_closed_account(make_patient, mailoutbox):
    cancelled = booked_ahead(make_patient, hours=50)
    appointment_cancel(actor=cancelled.patient, appointment_id=cancelled.pk)
    erased = booked_ahead(make_patient, hours=50)
    patient_erase(patient=erased.patient)
    kept = booked_ahead(make_patient, hours=50)

    with time_machine.travel(kept.starts_at - 47 * HOUR, tick=False):
        out = send_reminders()

    assert "1 reminders sent, 1 skipped" in out
    assert [mail.to for mail in mailoutbox] == [[kept.patient.email]]
    assert list(SentReminder.objects.values_list("appointment_id", flat=True)) == [kept.pk]


@pytest.mark.django_db
def test_a_refused_mail_is_tried_again_next_run(make_patient, mailoutbox, settings):
    appointment = booked_ahead(make_patient, hours=3)
    with time_machine.travel(appointment.starts_at - HOUR, tick=False):
        settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
        out = send_reminders()
        assert "0 reminders sent" in out and "1 failed" in out
        assert not SentReminder.objects.exists()
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        assert "1 reminders sent" in send_reminders()

    assert len(mailoutbox) == 1
    assert AuditEvent.objects.filter(action=AuditAction.REMINDER_SEND).count() == 1


@pytest.mark.django_db
def test_a_claim_left_by_a_stopped_sender_is_reported_and_never_sent_twice(
    make_patient, mailoutbox
):
    appointment = booked_ahead(make_patient, hours=3)
    with time_machine.travel(appointment.starts_at - HOUR, tick=False) as clock:
        SentReminder.objects.create(appointment=appointment, hours_before=2)  # then it died
        clock.shift(datetime.timedelta(minutes=20))
        out = send_reminders()

    assert "0 reminders sent" in out
    assert "1 reminders were claimed by a run that stopped" in out
    assert mailoutbox == []


@pytest.mark.django_db
def test_dry_run_counts_and_sends_nothing(make_patient, mailoutbox):
    appointment = booked_ahead(make_patient, hours=3)
    with time_machine.travel(appointment.starts_at - HOUR, tick=False):
        assert "1 reminders are due now" in send_reminders("--dry-run")

    assert mailoutbox == []
    assert not SentReminder.objects.exists()


# --- Two senders at once (real threads and transactions) -------------------------------------

SENDERS = 4
APPOINTMENTS = 12


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_senders_running_at_once_send_each_reminder_exactly_once(vendor, make_patient, mailoutbox):
    assert connection.vendor == vendor
    appointments = [booked_ahead(make_patient, hours=49 + n / 10) for n in range(APPOINTMENTS)]
    barrier = threading.Barrier(SENDERS)
    runs = []

    def sender():
        connection.ensure_connection()
        barrier.wait(timeout=60)
        runs.append(reminders_send())

    mailoutbox.clear()  # the booking confirmations
    latest = max(appointment.starts_at for appointment in appointments)
    with time_machine.travel(latest - 47 * HOUR, tick=False):
        errors = run_together([sender] * SENDERS)

    assert errors == []
    assert sum(run.sent for run in runs) == APPOINTMENTS
    assert sum(run.failed for run in runs) == 0
    assert sorted(mail.to[0] for mail in mailoutbox) == sorted(
        appointment.patient.email for appointment in appointments
    )
    assert SentReminder.objects.filter(hours_before=48).exclude(sent_at=None).count() == (
        APPOINTMENTS
    )
    assert AuditEvent.objects.filter(action=AuditAction.REMINDER_SEND).count() == APPOINTMENTS
