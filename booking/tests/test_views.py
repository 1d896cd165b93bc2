"""The offer page the waitlist e-mail links to: the patient's own offer only, confirmed or
declined with a CSRF-protected POST form."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from booking.models import Appointment, AppointmentStatus, OfferStatus, WaitlistOffer
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import practitioner_create
from booking.waitlist import offer_url, waitlist_join

pytestmark = pytest.mark.django_db


@pytest.fixture
def offer(slot, make_patient):
    """`slot` freed by a cancellation and offered to a waiting patient."""
    owner, waiting = make_patient().user, make_patient().user
    appointment = appointment_book(patient=owner, slot_id=slot.public_id)
    waitlist_join(patient=waiting, specialty="allgemeinmedizin")
    appointment_cancel(actor=owner, appointment_id=appointment.pk)
    return WaitlistOffer.objects.get(entry__patient=waiting)


def page(offer) -> str:
    return reverse("booking:waitlist_offer", kwargs={"offer_id": offer.pk})


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_e_mail_link_is_the_page(offer):
    assert offer_url(offer).endswith(page(offer))


def test_the_patient_sees_the_held_slot_and_the_two_buttons(offer, clinic):
    response = signed_in(offer.entry.patient).get(page(offer))

    assert response.status_code == 200
    text = response.text
    assert clinic.name in text and clinic.address in text
    assert timezone.localtime(offer.slot.starts_at).strftime("%d.%m.%Y") in text
    assert "Diesen Termin buchen" in text  # German by default
    assert 'name="csrfmiddlewaretoken"' in text


def test_confirming_on_the_page_books_the_slot(offer):
    client = signed_in(offer.entry.patient)

    response = client.post(page(offer), {"action": "confirm"}, follow=True)

    assert response.status_code == 200
    assert "Ihr Termin ist gebucht" in response.text
    assert Appointment.objects.get(slot=offer.slot, status=AppointmentStatus.BOOKED).patient == (
        offer.entry.patient
    )
    offer.refresh_from_db()
    assert offer.status == OfferStatus.CONFIRMED


def test_declining_on_the_page_passes_the_slot_on(offer):
    response = signed_in(offer.entry.patient).post(page(offer), {"action": "decline"}, follow=True)

    assert response.status_code == 200
    offer.refresh_from_db()
    assert offer.status == OfferStatus.DECLINED
    assert "weitergegeben" in response.text or "nächste" in response.text


def test_someone_elses_offer_is_404_and_unchanged(offer, make_patient):
    other = signed_in(make_patient().user)

    assert other.get(page(offer)).status_code == 404
    assert other.post(page(offer), {"action": "confirm"}).status_code == 404
    offer.refresh_from_db()
    assert offer.status == OfferStatus.OPEN


def test_staff_get_403_and_anonymous_the_login(offer, clinic):
    assert signed_in(practitioner_create(clinic=clinic)).get(page(offer)).status_code == 403
    response = Client().get(page(offer))
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_a_post_without_the_csrf_token_is_refused(offer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(offer.entry.patient)

    assert client.post(page(offer), {"action": "confirm"}).status_code == 403
    offer.refresh_from_db()
    assert offer.status == OfferStatus.OPEN
