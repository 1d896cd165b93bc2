"""The appointment e-mails (confirmation, cancellation, move) through a transactional outbox.

The booking, cancelling or moving transaction writes one `OutboxMail` row (ids, kind,
language: nothing personal) and commits; a sender (`manage.py send_mails`, or inline after the
commit with `PATTERM_MAIL_SEND_INLINE`) then renders the mail and its iCalendar file and hands
it to Django's e-mail framework. The request no longer renders or sends anything (decision
0022), and a mail is written if and only if its change commits.

Sending, safe with any number of senders at once:

1. Claim: in a short transaction, `SELECT ... FOR UPDATE SKIP LOCKED` a batch of due rows
   (unfinished, `next_attempt_at` passed, no live claim) and set `claimed_until` (now + CLAIM):
   a second sender skips the locked rows, and after the commit sees the claim. Committed before
   any SMTP traffic, so no row lock is held while a mail server answers.
2. Send each claimed row, then mark it finished (`sent`) and release the claim.
3. A refusal of the mail server (any exception from the backend) keeps the row: `attempts` + 1,
   `next_attempt_at` backs off (30 s, 1, 2, 4 ... minutes, at most an hour), the claim ends. A
   mail is never given up; a row failing for long is reported by every run.

A sender that dies between the mail server's acceptance and step 2's commit leaves a claim
that ends after CLAIM; the mail is then sent again. That is the one double, and it needs a
crash in that instant: in normal operation every mail goes out exactly once (decision 0022
weighs this against the reminders' at-most-once, decision 0006).

Rendered when sent, from the appointment as it is then: a confirmation or move mail written
before a later move or a cancellation of the same appointment is `superseded` (not sent; the
later mail, with the calendar file of the current revision, is), so nobody gets "confirmed"
with a cancelled calendar file. A recipient whose account was closed meanwhile gets nothing.
"""

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Min, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.services import user_has_login
from booking.calendar import ics_attachment
from booking.models import Appointment, AppointmentStatus, MailKind, MailOutcome, OutboxMail

logger = logging.getLogger("patterm.mail")

# How long a sender owns a claimed row: far above one SMTP conversation, so that only a
# sender that stopped loses its claim.
CLAIM = datetime.timedelta(minutes=10)
FIRST_RETRY = datetime.timedelta(seconds=30)
LONGEST_RETRY = datetime.timedelta(hours=1)
DEFAULT_BATCH_SIZE = 50


# --- Writing, in the change's transaction ----------------------------------------------------


def mail_enqueue(*, kind: str, appointment: Appointment, recipient: User) -> OutboxMail:
    """Write the mail of a change in the caller's transaction (one INSERT). In the language
    active now (the request's). With PATTERM_MAIL_SEND_INLINE it is sent right after commit."""
    mail = OutboxMail.objects.create(
        kind=kind,
        appointment=appointment,
        recipient=recipient,
        language=translation.get_language() or "",
        revision=appointment.moves,
    )
    if settings.PATTERM_MAIL_SEND_INLINE:
        # Robust: a failing mail server must not turn a committed booking into an error page;
        # the row stays and the next run (or inline send) retries it.
        transaction.on_commit(lambda: mails_send(only=[mail.pk]), robust=True)
    return mail


# --- Sending ---------------------------------------------------------------------------------


@dataclass
class MailRun:
    sent: int = 0
    superseded: int = 0
    no_recipient: int = 0
    failed: int = 0  # the mail server refused; retried with backoff


def _due(now: datetime.datetime):
    return OutboxMail.objects.filter(finished_at=None, next_attempt_at__lte=now).filter(
        Q(claimed_until=None) | Q(claimed_until__lt=now)
    )


def _claim(*, limit: int, only: list[int] | None) -> list[OutboxMail]:
    """Claim up to `limit` due rows, oldest first, in a committed transaction."""
    now = timezone.now()
    due = _due(now)
    if only is not None:
        due = due.filter(pk__in=only)
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            OutboxMail.objects.filter(pk__in=ids).update(claimed_until=now + CLAIM)
    return list(
        OutboxMail.objects.filter(pk__in=ids)
        .select_related(
            "recipient",
            "appointment__slot__clinic",
            "appointment__slot__practitioner",
            "appointment__slot__specialty",
            "appointment__patient",
            "appointment__booked_by",
        )
        .order_by("pk")
    )


def _superseded(mail: OutboxMail) -> bool:
    """A confirmation or move mail of a revision the appointment has left (moved again or
    cancelled since): the later mail tells what holds now."""
    if mail.kind == MailKind.CANCELLATION:
        return False
    appointment = mail.appointment
    return appointment.status != AppointmentStatus.BOOKED or appointment.moves != mail.revision


def _finish(mail: OutboxMail, outcome: str) -> None:
    OutboxMail.objects.filter(pk=mail.pk).update(
        finished_at=timezone.now(), outcome=outcome, claimed_until=None
    )


def _retry_later(mail: OutboxMail, error: Exception) -> None:
    delay = min(FIRST_RETRY * (2**mail.attempts), LONGEST_RETRY)
    OutboxMail.objects.filter(pk=mail.pk).update(
        attempts=mail.attempts + 1,
        next_attempt_at=timezone.now() + delay,
        claimed_until=None,
        last_error=type(error).__name__[:100],
    )


def mail_send_one(mail: OutboxMail, run: MailRun) -> None:
    """Render and send one claimed row, then record how it ended."""
    if _superseded(mail):
        _finish(mail, MailOutcome.SUPERSEDED)
        run.superseded += 1
        return
    if not mail.recipient.is_active or not user_has_login(mail.recipient):
        _finish(mail, MailOutcome.NO_RECIPIENT)
        run.no_recipient += 1
        return
    try:
        render_and_send(mail)
    except Exception as error:
        # Ids and the exception's class only, no traceback: an SMTP error's text quotes the
        # refused address (SMTPRecipientsRefused), and the log must hold no personal data.
        logger.error(
            "%s mail %s (appointment %s) not sent: %s",
            mail.kind,
            mail.pk,
            mail.appointment_id,
            type(error).__name__,
        )
        _retry_later(mail, error)
        run.failed += 1
        return
    _finish(mail, MailOutcome.SENT)
    run.sent += 1


def mails_send(
    *, batch_size: int = DEFAULT_BATCH_SIZE, only: list[int] | None = None, progress=None
) -> MailRun:
    """Send every mail due now, batch after batch (`manage.py send_mails --once`); `only`:
    just these rows (the inline send after a commit). Safe beside other senders."""
    run = MailRun()
    while claimed := _claim(limit=batch_size, only=only):
        for mail in claimed:
            mail_send_one(mail, run)
            if progress:
                progress(1)
        if len(claimed) < batch_size:
            break
    return run


def finished_mails_purge(now: datetime.datetime | None = None) -> int:
    """Delete the rows finished longer ago than PATTERM_MAIL_OUTBOX_KEEP_DAYS: a sent mail's
    row is needed only while someone may ask whether it went out. Returns how many."""
    now = now or timezone.now()
    keep = datetime.timedelta(days=settings.PATTERM_MAIL_OUTBOX_KEEP_DAYS)
    deleted, _by_model = OutboxMail.objects.filter(finished_at__lt=now - keep).delete()
    return deleted


@dataclass
class OutboxState:
    waiting: int  # unfinished rows (due now or backing off)
    retrying: int  # of them, refused at least once
    oldest: datetime.datetime | None


def outbox_state() -> OutboxState:
    unfinished = OutboxMail.objects.filter(finished_at=None)
    return OutboxState(
        waiting=unfinished.count(),
        retrying=unfinished.filter(attempts__gt=0).count(),
        oldest=unfinished.aggregate(oldest=Min("created_at"))["oldest"],
    )


# --- Rendering -------------------------------------------------------------------------------


def appointment_links(appointment: Appointment) -> dict:
    """The e-mails' links: the portal's appointment page (details, cancel) and its calendar
    file. Not the API, whose endpoints need a bearer token a mail client does not send."""
    base_url = settings.PATTERM_PUBLIC_URL.rstrip("/")
    kwargs = {"appointment_id": appointment.pk}
    return {
        "appointment_url": base_url + reverse("booking:appointment", kwargs=kwargs),
        "ics_url": base_url + reverse("booking:ics", kwargs=kwargs),
    }


SUBJECTS = {
    MailKind.CONFIRMATION: _("Your appointment on %(date)s"),
    MailKind.CANCELLATION: _("Your appointment on %(date)s is cancelled"),
    MailKind.MOVE: _("Your appointment is moved to %(date)s"),
}
TEMPLATES = {
    MailKind.CONFIRMATION: "booking/confirmation_email.txt",
    MailKind.CANCELLATION: "booking/cancellation_email.txt",
    MailKind.MOVE: "booking/move_email.txt",
}


def render_and_send(mail: OutboxMail) -> None:
    """Time, clinic, address, links and the calendar file of the appointment's current
    revision (booking/calendar.py: PUBLISH, REQUEST once moved, CANCEL); no name, birth date
    or reason. E-mail is not an encrypted channel, and the console backend is a log like any
    other. In the language of the request that wrote the row."""
    appointment = mail.appointment
    slot = appointment.slot
    local_start = timezone.localtime(appointment.starts_at)
    with translation.override(mail.language or None):
        context = {
            "starts_at": local_start,
            "clinic": slot.clinic,
            "specialty": slot.specialty.name,
            **appointment_links(appointment),
            "cutoff_hours": slot.clinic.cancellation_cutoff_hours,
        }
        message = EmailMessage(
            subject=str(SUBJECTS[mail.kind] % {"date": f"{local_start:%d.%m.%Y}"}),
            body=render_to_string(TEMPLATES[mail.kind], context),
            to=[mail.recipient.email],
        )
        message.attach(*ics_attachment(appointment))
    message.send()
