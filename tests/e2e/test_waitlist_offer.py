"""The waitlist offer from the e-mail link: sign in, see the held slot, book it."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from booking.models import AppointmentStatus, WaitlistOffer
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import practitioner_create, slot_create
from booking.waitlist import offer_url, waitlist_join
from tests.e2e.conftest import shot

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def test_the_e_mail_link_leads_through_the_login_to_the_offer_and_books_it(page, make_patient):
    slot = slot_create(practitioner=practitioner_create())
    owner = make_patient().user
    waiting = make_patient(email="erika@example.com").user
    appointment = appointment_book(patient=owner, slot_id=slot.public_id)
    waitlist_join(patient=waiting, specialty="allgemeinmedizin")
    appointment_cancel(actor=owner, appointment_id=appointment.pk)
    offer = WaitlistOffer.objects.get(entry__patient=waiting)
    link = offer_url(offer).split("://", 1)[1].split("/", 1)[1]

    page.goto("/" + link)
    page.get_by_label("E-Mail-Adresse").fill(waiting.email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    expect(page.get_by_role("heading", name="Ein Termin von Ihrer Warteliste")).to_be_visible()
    day = timezone.localtime(slot.starts_at).strftime("%d.%m.%Y")
    expect(page.get_by_text(day)).to_be_visible()
    shot(page, "waitlist-offer")
    page.get_by_role("button", name="Diesen Termin buchen").click()

    expect(page.get_by_role("status")).to_contain_text("Ihr Termin ist gebucht")
    expect(page.get_by_text("Sie haben diesen Termin gebucht.")).to_be_visible()
    assert slot.appointments.get(status=AppointmentStatus.BOOKED).patient == waiting
