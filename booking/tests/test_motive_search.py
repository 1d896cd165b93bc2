"""Search by visit motive (issue 16): only start times where the whole motive fits, in the
portal's week cards and the API's slot search; insurance and new/known filters; the
practitioner page; booking a motive from the portal."""

import pytest
from django.test import Client
from django.urls import reverse

from booking.models import Appointment, MotivePatients, Slot
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from booking.tests.test_motives import motive_create, row_of_slots
from booking.views import PRACTITIONERS_PER_PAGE  # noqa: F401
from consent.models import CareRelationship, CareSource

pytestmark = pytest.mark.django_db


def api_ids(client, **params) -> list[str]:
    response = client.get("/api/slots", params)
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["items"]]


def test_the_api_lists_only_starts_where_the_motive_fits(api_client, doctor):
    a, b, c = row_of_slots(doctor, 3)
    lone = slot_create(practitioner=doctor, starts_at=days_ahead(4, 14))
    long = motive_create(doctor, duration_minutes=40)
    longer = motive_create(doctor, duration_minutes=60)
    short = motive_create(doctor, duration_minutes=10)
    Slot.objects.filter(pk=c.pk).update(is_booked=True)

    assert api_ids(api_client, motive=long.pk) == [a.public_id]
    assert api_ids(api_client, motive=longer.pk) == []
    assert api_ids(api_client, motive=short.pk) == [a.public_id, b.public_id, lone.public_id]


def test_the_api_applies_the_motives_rules(api_client, doctor):
    (slot,) = row_of_slots(doctor, 1)
    statutory_new = motive_create(
        doctor,
        duration_minutes=20,
        accepts_private=False,
        accepts_self_pay=False,
        patients=MotivePatients.NEW,
    )
    offline = motive_create(doctor, duration_minutes=20, bookable_online=False)

    assert api_ids(api_client, motive=statutory_new.pk, insurance_type="gesetzlich") == [
        slot.public_id
    ]
    assert api_ids(api_client, motive=statutory_new.pk, insurance_type="privat") == []
    assert api_ids(api_client, motive=statutory_new.pk, patient_status="known") == []
    assert api_ids(api_client, motive=offline.pk) == []
    assert api_ids(api_client, motive=999_999) == []
    # Without a motive: practitioners with a motive open to them (or none at all).
    other = practitioner_create(clinic=slot.clinic)
    (elsewhere,) = row_of_slots(other, 1, day=5)
    assert api_ids(api_client, insurance_type="privat") == [elsewhere.public_id]
    assert api_ids(api_client, insurance_type="gesetzlich") == [slot.public_id, elsewhere.public_id]
    bad = api_client.get("/api/slots", {"insurance_type": "gkv"})
    assert bad.status_code == 422


def test_cards_show_times_for_the_motive_and_filter_by_insurance(doctor, clinic):
    a, b, _c = row_of_slots(doctor, 3)
    motive_create(doctor, duration_minutes=40, accepts_private=False, name_de="Erstuntersuchung")
    client = Client()

    statutory = client.get(reverse("home"), {"insurance_type": "gesetzlich"})
    private = client.get(reverse("home"), {"insurance_type": "privat"})

    (card,) = statutory.context["cards"]
    assert card.motive.name_de == "Erstuntersuchung"
    assert [s.public_id for d in card.days for s in d["slots"]] == [a.public_id, b.public_id]
    assert f"?motive={card.motive.pk}" in statutory.text
    assert private.context["cards"] == []


def test_a_signed_in_patient_is_not_asked_and_sees_the_motives_for_them(doctor, clinic, patient):
    row_of_slots(doctor, 2)
    new_only = motive_create(doctor, duration_minutes=20, patients=MotivePatients.NEW)
    known_only = motive_create(doctor, duration_minutes=20, patients=MotivePatients.KNOWN)
    client = Client()
    client.force_login(patient.user)

    before = client.get(reverse("home"))
    CareRelationship.objects.create(patient=patient.user, clinic=clinic, source=CareSource.BOOKING)
    after = client.get(reverse("home"))
    visitor = Client().get(reverse("home"))

    assert "patient_status" not in before.context["form"].fields
    assert "patient_status" in visitor.context["form"].fields
    assert before.context["cards"][0].motives == [new_only]
    assert after.context["cards"][0].motives == [known_only]


def test_the_practitioner_page_shows_clinic_motives_and_times(doctor, clinic):
    from booking.tests.factories import membership_of

    a, b = row_of_slots(doctor, 2)
    short = motive_create(
        doctor, duration_minutes=20, name_de="Kontrolle", note_de="Bitte Überweisung mitbringen"
    )
    long = motive_create(doctor, duration_minutes=40, name_de="Erstuntersuchung")
    url = reverse("booking:practitioner", args=[membership_of(doctor).pk])

    page = Client().get(url)
    chosen = Client().get(url, {"motive": long.pk})

    assert page.status_code == 200
    assert clinic.address in page.text
    assert "Allgemeinmedizin" in page.text
    assert "Bitte Überweisung mitbringen" in page.text
    assert page.context["card"].motive == short
    assert [s for d in page.context["card"].days for s in d["slots"]] == [a, b]
    assert [s for d in chosen.context["card"].days for s in d["slots"]] == [a]
    assert Client().get(reverse("booking:practitioner", args=[999_999])).status_code == 404


def test_the_book_page_books_the_motive_and_asks_for_insurance_when_it_matters(doctor, patient):
    a, b = row_of_slots(doctor, 2)
    motive = motive_create(
        doctor, duration_minutes=40, accepts_self_pay=False, note_de="Bitte Überweisung mitbringen"
    )
    client = Client()
    client.force_login(patient.user)
    url = reverse("booking:book", kwargs={"slot_id": a.public_id}) + f"?motive={motive.pk}"

    page = client.get(url)
    refused = client.post(url, {"reason": "", "insurance_type": "selbstzahler"})
    booked = client.post(url, {"reason": "", "insurance_type": "gesetzlich"})

    assert "Bitte Überweisung mitbringen" in page.text
    assert "insurance_type" in page.context["form"].fields
    assert refused.status_code == 422
    assert "insurance_type" in refused.context["form"].errors
    assert booked.status_code == 302
    appointment = Appointment.objects.get(patient=patient.user)
    assert appointment.motive == motive
    assert appointment.patient_insurance_type == "gesetzlich"
    assert set(Slot.objects.filter(pk__in=[a.pk, b.pk]).values_list("is_booked", flat=True)) == {
        True
    }


def test_a_day_too_far_ahead_is_a_field_error_not_a_500(doctor):
    for path in (
        reverse("home"),
        reverse("booking:practitioner", args=[doctor.memberships.get().pk]),
    ):
        response = Client().get(path, {"date": "9999-12-31"})
        assert response.status_code == 200
    assert "date" in Client().get(reverse("home"), {"date": "9999-12-31"}).context["form"].errors
