"""Moving an appointment in a real browser (issue 19, decision 0021): from the appointment
page to "Termin verschieben", a new time chosen, the appointment moved, the old time free and
the calendar file a METHOD:REQUEST with the next SEQUENCE."""

from pathlib import Path

import pytest
from django.urls import reverse
from icalendar import Calendar
from playwright.sync_api import expect

from accounts.tests.factories import ClinicFactory
from booking.models import Appointment, Slot
from booking.services import appointment_book
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from patterm.tests.staff_world import P_FIRST, P_LAST, slot_at, world_build
from tests.e2e.conftest import shot
from tests.e2e.test_relatives import assert_accessible
from tests.e2e.test_staff import log_in as staff_log_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def test_a_patient_moves_their_appointment_to_another_time(new_page, make_patient):
    clinic = ClinicFactory(name="Hausarztpraxis Mitte", city="Berlin", address="Torstraße 1")
    doctor = practitioner_create(clinic=clinic, first_name="Anna", last_name="Berger")
    old = slot_create(practitioner=doctor, starts_at=days_ahead(4, 9))
    new = slot_create(practitioner=doctor, starts_at=days_ahead(5, 11))
    patient = make_patient(email="lena@example.com").user
    appointment = appointment_book(patient=patient, slot_id=old.public_id)
    page = new_page()
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(patient.email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("button", name="Abmelden")).to_be_visible()

    page.goto(reverse("booking:appointment", kwargs={"appointment_id": appointment.pk}))
    page.get_by_role("link", name="Termin verschieben").click()
    expect(page.get_by_role("heading", name="Termin verschieben")).to_be_visible()
    page.get_by_role("radio", name="11:00").check()
    shot(page, "move-choose-time")
    assert_accessible(page)
    page.get_by_role("button", name="Auf diese Zeit verschieben").click()

    expect(page.get_by_text("Ihr Termin ist verschoben.")).to_be_visible()
    shot(page, "move-done")
    appointment.refresh_from_db()
    assert appointment.slot_id == new.pk
    assert Slot.objects.get(pk=old.pk).is_booked is False
    with page.expect_download() as download:
        page.get_by_role("link", name="In den Kalender übernehmen (.ics)").click()
    calendar = Calendar.from_ical(Path(download.value.path()).read_bytes())
    (event,) = calendar.walk("VEVENT")
    assert str(calendar["METHOD"]) == "REQUEST" and int(event["SEQUENCE"]) == 1
    assert event.decoded("DTSTART") == new.starts_at
    assert Appointment.objects.count() == 1


def test_the_practice_moves_a_patients_appointment_from_the_schedule(new_page, make_patient):
    """The patient called: the practitioner opens "Verschieben" in the schedule, picks the
    agreed time, and the appointment moves (decision 0021's amendment)."""
    world = world_build(make_patient, emergency=False)
    doctor = world.users["practitioner"]
    later = slot_at(practitioner=doctor, clinic=world.north, days=5, hour=11)
    page = new_page()
    staff_log_in(page, doctor)
    expect(page.get_by_role("heading", name="Mein Terminplan")).to_be_visible()

    page.get_by_role("link", name="Den Termin um 09:00 verschieben").first.click()
    expect(page.get_by_role("heading", name="Termin verschieben")).to_be_visible()
    expect(page.get_by_text(f"{P_FIRST} {P_LAST}")).to_be_visible()
    page.get_by_role("radio", name="11:00").check()
    shot(page, "staff-move-choose-time")
    assert_accessible(page)
    page.get_by_role("button", name="Auf diese Zeit verschieben").click()

    expect(page.get_by_text("Der Termin ist verschoben.")).to_be_visible()
    expect(page.get_by_role("heading", name="Mein Terminplan")).to_be_visible()
    world.appointment.refresh_from_db()
    assert world.appointment.slot_id == later.pk
