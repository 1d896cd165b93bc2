"""The appointment e-mails' outbox (decision 0022): written with the booking, sent after it by
`manage.py send_mails`, once, with retries, by any number of senders at once."""

import datetime
import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from booking.models import MailOutcome, OutboxMail
from booking.outbox import CLAIM, mails_send
from booking.services import appointment_book, appointment_cancel, appointment_move
from booking.tests.factories import bearer, slot_create
from booking.tests.test_concurrency import BOTH_DATABASES, run_together
from patterm.management.commands.serve import processes

REFUSING = "booking.tests.test_outbox.RefusingBackend"


class RefusingBackend(BaseEmailBackend):
    """A mail server that is down: every message is refused."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: mail.example.org")


def test_a_refused_mail_is_retried_with_backoff_and_never_lost(settings, slot, patient, sent_mails):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        appointment_book(patient=patient.user, slot_id=slot.public_id)
        settings.EMAIL_BACKEND = REFUSING
        mails_send()
        clock.shift(datetime.timedelta(seconds=10))
        mails_send()  # backing off: not tried again yet
        queued = OutboxMail.objects.get()
        assert (queued.attempts, queued.finished_at) == (1, None)
        assert queued.last_error == "SMTPServerDisconnected"  # the class, never the text
        clock.shift(datetime.timedelta(seconds=25))  # 30 s after the first refusal
        mails_send()
        queued.refresh_from_db()
        assert queued.attempts == 2
        assert queued.next_attempt_at == timezone.now() + datetime.timedelta(minutes=1)

        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        assert sent_mails() == []  # still backing off
        clock.shift(datetime.timedelta(minutes=1))
        (message,) = sent_mails()
    assert message.to == [patient.user.email]
    queued.refresh_from_db()
    assert (queued.outcome, queued.claimed_until) == (MailOutcome.SENT, None)
    assert sent_mails() == [message]


def test_a_sender_that_stopped_after_claiming_leaves_the_mail_to_the_next_after_its_claim(
    slot, patient, sent_mails
):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    # A sender claimed it and died before sending (killed, the machine down).
    OutboxMail.objects.update(claimed_until=timezone.now() + CLAIM)

    assert sent_mails() == []  # another sender leaves a live claim alone
    with time_machine.travel(timezone.now() + CLAIM + datetime.timedelta(seconds=1)):
        (message,) = sent_mails()
    assert message.to == [patient.user.email]


def test_a_confirmation_not_sent_before_a_cancellation_is_superseded_by_it(
    slot, patient, sent_mails
):
    appointment = appointment_book(patient=patient.user, slot_id=slot.public_id)
    appointment_cancel(actor=patient.user, appointment_id=appointment.pk)

    (message,) = sent_mails()  # no "confirmed" mail with a cancelled calendar file
    assert message.attachments[0][2].startswith("text/calendar; method=CANCEL")
    outcomes = dict(OutboxMail.objects.values_list("kind", "outcome"))
    assert outcomes == {"confirmation": "superseded", "cancellation": "sent"}


def test_a_move_mail_of_an_older_revision_is_superseded_by_the_next_move(
    doctor, patient, sent_mails
):
    first, second, third = (slot_create(practitioner=doctor) for _ in range(3))
    appointment = appointment_book(patient=patient.user, slot_id=first.public_id)
    sent_mails().clear()
    for target in (second, third):
        appointment_move(
            actor=patient.user, appointment_id=appointment.pk, slot_id=target.public_id
        )

    (message,) = sent_mails()
    assert timezone.localtime(third.starts_at).strftime("%H:%M") in message.body
    assert "SEQUENCE:2" in message.attachments[0][1]


def test_no_mail_for_a_recipient_whose_account_was_closed_before_sending(slot, patient, sent_mails):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    patient.user.is_active = False
    patient.user.save(update_fields=["is_active"])

    assert sent_mails() == []
    assert OutboxMail.objects.get().outcome == MailOutcome.NO_RECIPIENT


def test_the_mail_is_in_the_language_of_the_request_that_booked(
    api_client, slot, patient, sent_mails
):
    response = api_client.post(
        "/api/appointments",
        data=json.dumps({"slot_id": slot.public_id}),
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
        **bearer(patient),
    )
    assert response.status_code == 201

    (message,) = sent_mails()
    assert message.subject.startswith("Your appointment on")


def test_inline_sending_sends_at_commit_through_the_same_sender(
    settings, slot, patient, django_capture_on_commit_callbacks
):
    settings.PATTERM_MAIL_SEND_INLINE = True  # the SQLite default (make run, runserver)
    with django_capture_on_commit_callbacks(execute=True):
        appointment_book(patient=patient.user, slot_id=slot.public_id)

    (message,) = mail.outbox
    assert message.to == [patient.user.email]
    assert OutboxMail.objects.get().outcome == MailOutcome.SENT


def test_send_mails_once_says_what_it_sent_and_what_waits(settings, doctor, make_patient):
    for _ in range(3):
        appointment_book(
            patient=make_patient().user, slot_id=slot_create(practitioner=doctor).public_id
        )
    out = StringIO()
    call_command("send_mails", "--once", stdout=out)
    assert "3 mails sent, 0 superseded" in out.getvalue()
    assert "wait in the outbox" not in out.getvalue()

    appointment_book(
        patient=make_patient().user, slot_id=slot_create(practitioner=doctor).public_id
    )
    settings.EMAIL_BACKEND = REFUSING
    out = StringIO()
    call_command("send_mails", "--once", stdout=out)
    assert "0 mails sent" in out.getvalue() and "1 refused (retried later)" in out.getvalue()
    assert "1 mails wait in the outbox (1 of them refused before" in out.getvalue()
    assert len(mail.outbox) == 3


def test_make_run_starts_the_mail_sender_beside_the_web_server():
    assert processes(8000)["mail-sender"][-1] == "send_mails"


SENDERS, MAILS = 4, 40


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_senders_running_at_once_send_every_mail_exactly_once(vendor, doctor, make_patient):
    assert connection.vendor == vendor
    booked = [
        appointment_book(
            patient=make_patient().user, slot_id=slot_create(practitioner=doctor).public_id
        )
        for _ in range(MAILS)
    ]
    barrier = threading.Barrier(SENDERS)

    def sender():
        connection.ensure_connection()
        barrier.wait(timeout=60)
        mails_send(batch_size=3)  # small batches: the senders interleave

    errors = run_together([sender for _ in range(SENDERS)])

    assert errors == []
    assert sorted(message.to[0] for message in mail.outbox) == sorted(
        appointment.patient.email for appointment in booked
    )
    assert set(OutboxMail.objects.values_list("outcome", flat=True)) == {MailOutcome.SENT}


@pytest.mark.django_db(transaction=True)
@pytest.mark.requires_postgresql
def test_the_long_running_sender_sends_what_is_committed_and_stops_on_sigterm(doctor, make_patient):
    from audit.tests.test_concurrency import _test_database_url

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"}
    env["DATABASE_URL"] = _test_database_url()
    sender = subprocess.Popen(
        [sys.executable, "manage.py", "send_mails", "--interval", "0.05"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3):
            slot = slot_create(practitioner=doctor)
            appointment_book(patient=make_patient().user, slot_id=slot.public_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and OutboxMail.objects.filter(finished_at=None).exists():
            time.sleep(0.05)  # waiting for another process, not controlling time
    finally:
        sender.send_signal(signal.SIGTERM)
        out, err = sender.communicate(timeout=30)
    assert sender.returncode == 0, err
    assert list(OutboxMail.objects.values_list("outcome", flat=True)) == [MailOutcome.SENT] * 3
    assert "Mail sender running" in out and "Mail sender stopped." in out


class AddressRefusingBackend(BaseEmailBackend):
    """A mail server that refuses the recipient, quoting the address as smtplib does."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPRecipientsRefused(
            {address: (550, b"mailbox unavailable") for m in email_messages for address in m.to}
        )


def test_a_refused_mail_is_logged_without_its_address(settings, slot, patient, caplog):
    appointment_book(patient=patient.user, slot_id=slot.public_id)
    settings.EMAIL_BACKEND = "booking.tests.test_outbox.AddressRefusingBackend"
    with caplog.at_level("DEBUG", logger="patterm.mail"):
        assert mails_send().failed == 1
    assert "SMTPRecipientsRefused" in caplog.text
    assert patient.user.email not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def test_finished_rows_are_deleted_after_the_days_kept_unfinished_ones_never(
    settings, doctor, make_patient, sent_mails
):
    settings.PATTERM_MAIL_OUTBOX_KEEP_DAYS = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        appointment_book(
            patient=make_patient().user, slot_id=slot_create(practitioner=doctor).public_id
        )
        assert len(sent_mails()) == 1  # finished now
        settings.EMAIL_BACKEND = REFUSING
        appointment_book(
            patient=make_patient().user, slot_id=slot_create(practitioner=doctor).public_id
        )
        mails_send()  # refused: unfinished, backing off
        clock.shift(datetime.timedelta(days=31))
        out = StringIO()
        call_command("send_mails", "--once", stdout=out)  # refused again: still unfinished
    assert "1 finished mails older than 30 days deleted" in out.getvalue()
    (left,) = OutboxMail.objects.all()
    assert left.finished_at is None and left.attempts == 2
