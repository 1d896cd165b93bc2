"""iCalendar files for appointments (RFC 5545, iTIP methods of RFC 5546), built with `icalendar`.

One appointment is one event with one UID for its whole life. The file of a booked appointment
is `METHOD:PUBLISH` with `SEQUENCE:0`; each move (decision 0021) makes it `METHOD:REQUEST` with
the next `SEQUENCE` and the new time; once cancelled it is `METHOD:CANCEL`, `STATUS:CANCELLED`
with a sequence above the last, so a calendar that imported an earlier file updates or removes
the event. The sequence follows from the stored state (status and `moves`), so a file downloaded
twice is the same revision.
"""

from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from icalendar import Calendar, Event, vCalAddress, vText

from accounts.services import user_has_login
from booking.models import Appointment, AppointmentStatus

ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"


def appointment_uid(appointment: Appointment) -> str:
    """`<id>@<host of PATTERM_PUBLIC_URL>`: globally unique, the same in every file."""
    host = urlsplit(settings.PATTERM_PUBLIC_URL).hostname or "localhost"
    return f"{appointment.pk}@{host}"


def appointment_sequence(appointment: Appointment) -> int:
    """0 when booked, one more per move, and one more again once cancelled."""
    cancelled = appointment.status == AppointmentStatus.CANCELLED
    return appointment.moves + (1 if cancelled else 0)


def appointment_method(appointment: Appointment) -> str:
    """iTIP method: PUBLISH as booked (decision 0016), REQUEST once moved (the organizer's
    update of an event the attendee has), CANCEL once cancelled."""
    if appointment.status == AppointmentStatus.CANCELLED:
        return "CANCEL"
    return "REQUEST" if appointment.moves else "PUBLISH"


def _attendee(appointment: Appointment) -> vCalAddress | None:
    """Who gets the files (whoever booked, a relative has no address): iTIP's REQUEST names
    the attendee it updates. Only the address, never a name."""
    recipient = appointment.booked_by or appointment.patient
    if not user_has_login(recipient):
        return None
    attendee = vCalAddress(f"mailto:{recipient.email}")
    attendee.params["partstat"] = vText("ACCEPTED")
    attendee.params["rsvp"] = vText("FALSE")
    return attendee


def _description(appointment: Appointment) -> str:
    """Practitioner, specialty and the portal link; never the reason or anything medical."""
    slot = appointment.slot
    doctor = f"{slot.practitioner.first_name} {slot.practitioner.last_name}".strip()
    link = settings.PATTERM_PUBLIC_URL.rstrip("/") + reverse(
        "booking:appointment", kwargs={"appointment_id": appointment.pk}
    )
    lines = [(_("Practitioner"), doctor)] if doctor else []
    lines += [(_("Specialty"), slot.specialty.name), (_("Details and cancellation"), link)]
    return "\n".join(f"{label}: {value}" for label, value in lines)


def appointment_ics(appointment: Appointment) -> bytes:
    """One VEVENT with the time, the clinic and its address, the practitioner and specialty."""
    slot = appointment.slot
    cancelled = appointment.status == AppointmentStatus.CANCELLED
    method = appointment_method(appointment)
    calendar = Calendar()
    calendar.add("prodid", "-//Patterm//Termin//DE")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", appointment_uid(appointment))
    event.add("sequence", appointment_sequence(appointment))
    event.add("dtstamp", timezone.now())
    # The appointment's own times: a visit motive may span several slots (decision 0013).
    event.add("dtstart", appointment.starts_at)
    event.add("dtend", appointment.ends_at)
    # iTIP wants an organizer: the clinic, reached through the portal's sender address.
    organizer = vCalAddress(f"mailto:{parseaddr(settings.DEFAULT_FROM_EMAIL)[1]}")
    organizer.params["cn"] = vText(slot.clinic.name)
    event["organizer"] = organizer
    if method == "REQUEST" and (attendee := _attendee(appointment)) is not None:
        event.add("attendee", attendee)
    with translation.override(translation.get_language() or settings.LANGUAGE_CODE):
        summary = _("Appointment: %(clinic)s") % {"clinic": slot.clinic.name}
        event.add("summary", summary)
        event.add("description", _description(appointment))
    event["location"] = vText(f"{slot.clinic.name}, {slot.clinic.address}")
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    calendar.add_component(event)
    return calendar.to_ical()


def ics_attachment(appointment: Appointment) -> tuple[str, bytes, str]:
    """The file as an e-mail attachment (filename, content, MIME type with the iTIP method)."""
    method = appointment_method(appointment)
    return (
        f"termin-{appointment.pk}.ics",
        appointment_ics(appointment),
        f"text/calendar; method={method}; charset=utf-8",
    )
