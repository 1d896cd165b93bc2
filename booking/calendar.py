"""iCalendar files for appointments (RFC 5545), built with `icalendar`."""

from django.utils import timezone
from icalendar import Calendar, Event, vText

from booking.models import Appointment


def appointment_ics(appointment: Appointment) -> bytes:
    """One VEVENT with the time, the clinic and its address; no medical content, no reason."""
    slot = appointment.slot
    calendar = Calendar()
    calendar.add("prodid", "-//Patterm//Termin//DE")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"{appointment.pk}@patterm")
    event.add("dtstamp", timezone.now())
    event.add("dtstart", slot.starts_at)
    event.add("dtend", slot.ends_at)
    event.add("summary", f"Termin: {slot.clinic.name}")
    event["location"] = vText(f"{slot.clinic.name}, {slot.clinic.address}")
    event.add("status", "CANCELLED" if appointment.status == "cancelled" else "CONFIRMED")
    calendar.add_component(event)
    return calendar.to_ical()
