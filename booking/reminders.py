"""Appointment reminders by e-mail, at the hours before an appointment a clinic configures.

Each reminder is sent at most once, however many senders run at once and wherever one stops:
a `SentReminder` row (unique per appointment and hour mark) is claimed and committed first, the
e-mail sent after that commit, and the row marked sent (with its audit event) after the mail
server took the mail. A sender that loses the claim skips the reminder; one whose mail server
refuses removes its claim, so the next run tries again; one that dies between claim and sending
leaves a claim without `sent_at`, which the run reports and never sends twice.

The reminder of a mark is due from the mark until the next smaller mark (or the start), and only
when the appointment was booked before the mark: a sender that was down for a day sends the
latest due reminder once, not every missed one; a booking made 30 hours ahead gets the 2-hour
reminder only.
"""

import datetime
import logging
from dataclasses import dataclass

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic
from audit.models import AuditAction
from audit.signals import send_event
from booking.models import Appointment, AppointmentStatus, SentReminder
from booking.outbox import appointment_links
from consent.relatives import contact_for

logger = logging.getLogger("patterm.reminders")

# A claim older than this without `sent_at`: its sender stopped between claiming and sending.
STALE_CLAIM = datetime.timedelta(minutes=15)


@dataclass
class ReminderRun:
    sent: int = 0
    skipped: int = 0  # closed or erased accounts
    taken: int = 0  # claimed by another sender running at the same time
    failed: int = 0  # the mail server refused; tried again next run
    unconfirmed: int = 0  # claims of senders that stopped before sending


def due_mark(appointment: Appointment, now: datetime.datetime) -> int | None:
    """The hour mark whose reminder is due for `appointment` at `now`, if any."""
    marks = appointment.slot.clinic.reminder_offsets  # largest first
    start = appointment.starts_at
    for index, hours in enumerate(marks):
        moment = start - datetime.timedelta(hours=hours)
        following = marks[index + 1] if index + 1 < len(marks) else 0
        if moment <= now < start - datetime.timedelta(hours=following):
            return hours if appointment.booked_at < moment else None
    return None


def reminders_due(*, now: datetime.datetime) -> list[tuple[Appointment, int]]:
    """(appointment, hour mark) pairs due at `now` and not claimed yet: booked appointments
    only, so cancelled ones never get a reminder."""
    marks = [mark for clinic in Clinic.objects.all() for mark in clinic.reminder_offsets]
    if not marks:
        return []
    horizon = now + datetime.timedelta(hours=max(marks))
    claimed = Prefetch(
        "sent_reminders", queryset=SentReminder.objects.only("appointment_id", "hours_before")
    )
    upcoming = (
        Appointment.objects.filter(
            status=AppointmentStatus.BOOKED, starts_at__gt=now, starts_at__lte=horizon
        )
        .select_related("slot__clinic", "patient")
        .prefetch_related(claimed)
        .order_by("starts_at", "pk")
    )
    due = []
    for appointment in upcoming:
        mark = due_mark(appointment, now)
        done = {reminder.hours_before for reminder in appointment.sent_reminders.all()}
        if mark is not None and mark not in done:
            due.append((appointment, mark))
    return due


def _claim(appointment: Appointment, hours: int) -> SentReminder | None:
    """Claim one reminder in its own committed transaction; None when another sender has it or
    the appointment was cancelled meanwhile."""
    try:
        with transaction.atomic():
            booked = (
                Appointment.objects.select_for_update(of=("self",))
                .filter(pk=appointment.pk, status=AppointmentStatus.BOOKED)
                .exists()
            )
            if not booked:
                return None
            return SentReminder.objects.create(appointment=appointment, hours_before=hours)
    except IntegrityError:  # the unique constraint: another sender claimed it first
        return None


def reminders_send(*, progress=None) -> ReminderRun:
    """Send every reminder due now (`manage.py send_reminders`); idempotent."""
    now = timezone.now()
    run = ReminderRun()
    due = reminders_due(now=now)
    for appointment, hours in progress(due) if progress else due:
        patient = appointment.patient
        if not patient.is_active:  # the account is closed or erased: no mail
            run.skipped += 1
            continue
        claim = _claim(appointment, hours)
        if claim is None:
            run.taken += 1
            continue
        try:
            _send_reminder(appointment=appointment)
        except Exception:
            # Ids only: the address and the appointment's details stay out of the log.
            logger.exception("reminder %s h for appointment %s not sent", hours, appointment.pk)
            claim.delete()
            run.failed += 1
            continue
        with transaction.atomic():
            SentReminder.objects.filter(pk=claim.pk).update(sent_at=timezone.now())
            send_event(
                action=AuditAction.REMINDER_SEND,
                object_type="appointment",
                object_id=appointment.pk,
                subject_id=patient.pk,
                clinic_id=appointment.slot.clinic_id,
                details={"hours_before": hours},
            )
        run.sent += 1
    run.unconfirmed = SentReminder.objects.filter(
        sent_at=None, claimed_at__lt=now - STALE_CLAIM
    ).count()
    return run


def _send_reminder(*, appointment: Appointment) -> None:
    """Time, clinic, address and the links to cancel and to the calendar file; no name, no
    reason for the visit, no medical content. In the patient's language."""
    slot = appointment.slot
    local_start = timezone.localtime(appointment.starts_at)
    # A relative has no address of their own: their account holder is reminded.
    recipient = contact_for(appointment.patient)
    with translation.override(recipient.language):
        context = {
            "starts_at": local_start,
            "clinic": slot.clinic,
            **appointment_links(appointment),
            "cutoff_hours": slot.clinic.cancellation_cutoff_hours,
            "can_cancel_online": timezone.now()
            < appointment.starts_at
            - datetime.timedelta(hours=slot.clinic.cancellation_cutoff_hours),
        }
        send_mail(
            subject=str(
                _("Reminder: your appointment on %(date)s") % {"date": f"{local_start:%d.%m.%Y}"}
            ),
            message=render_to_string("booking/reminder_email.txt", context),
            from_email=None,
            recipient_list=[recipient.email],
        )
