"""The patient's "My waitlist" page: who may open it, joining with a form (the service's rules
shown next to the fields, the typed values kept, the limit as a form error), the entries with
their open offers, leaving (someone else's entry: 404), the empty state and the queries."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from booking.models import WaitlistEntry, WaitlistStatus
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import days_ahead, slot_create
from booking.tests.portal import ROLES, expected, portal_world
from booking.waitlist import waitlist_join

pytestmark = pytest.mark.django_db

PAGE = "/waitlist/"


@pytest.fixture
def world(make_patient):
    world = portal_world(make_patient)
    world.entry = waitlist_join(patient=world.patient, specialty="allgemeinmedizin")
    world.other_entry = waitlist_join(patient=world.other_patient, specialty="allgemeinmedizin")
    return world


def leave_url(entry) -> str:
    return reverse("booking:waitlist_leave", kwargs={"entry_id": entry.pk})


@pytest.mark.parametrize("role", ROLES)
def test_the_page_answers_each_role_as_expected(world, role):
    response = world.client_for(role).get(reverse("booking:waitlist"))

    assert response.status_code == expected({"anonymous": 302, "patient": 200, "staff": 403}, role)
    if response.status_code == 302:
        assert response.url.startswith(reverse("accounts:login") + "?next=")


@pytest.mark.parametrize("role", ROLES)
def test_only_the_owner_leaves_an_entry(world, role):
    response = world.client_for(role).post(leave_url(world.entry))

    assert response.status_code == expected(
        {"anonymous": 302, "patient": 302, "other_patient": 404, "staff": 403}, role
    )
    world.entry.refresh_from_db()
    left = role == "patient"
    assert world.entry.status == (WaitlistStatus.LEFT if left else WaitlistStatus.WAITING)
    if role == "patient":
        assert response.url == reverse("booking:waitlist")


def test_the_url_and_the_navigation(world):
    assert reverse("booking:waitlist") == PAGE
    response = world.client_for("patient").get(reverse("home"))
    assert f'href="{PAGE}"' in response.text and "Warteliste" in response.text


def test_the_page_lists_the_patients_own_entries_only(world):
    response = world.client_for("patient").get(PAGE)

    assert list(response.context["entries"]) == [world.entry]
    assert "Allgemeinmedizin" in response.text
    assert "Wartend" in response.text
    assert leave_url(world.entry) in response.text
    assert leave_url(world.other_entry) not in response.text


def test_joining_puts_the_patient_on_the_waitlist(world, make_patient):
    client = world.client_for("other_patient")
    WaitlistEntry.objects.filter(patient=world.other_patient).delete()
    start = timezone.localdate() + datetime.timedelta(days=2)
    end = start + datetime.timedelta(days=5)

    response = client.post(
        PAGE,
        {
            "specialty": "allgemeinmedizin",
            "city": "Berlin",
            "clinic": str(world.clinic.pk),
            "date_from": start.isoformat(),
            "date_to": end.isoformat(),
        },
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [(PAGE, 302)]
    entry = WaitlistEntry.objects.get(patient=world.other_patient)
    assert (entry.specialty.slug, entry.city, entry.clinic, entry.date_from, entry.date_to) == (
        "allgemeinmedizin",
        "Berlin",
        world.clinic,
        start,
        end,
    )
    assert "Sie stehen auf der Warteliste" in response.text
    assert world.clinic.name in response.text


def test_a_missing_specialty_is_an_error_next_to_the_field_and_keeps_the_values(world):
    response = world.client_for("patient").post(PAGE, {"specialty": "", "city": "Berlin"})

    assert response.status_code == 422
    assert 'id="id_specialty_error"' in response.text
    assert '<option value="Berlin" selected>' in response.text
    assert WaitlistEntry.objects.filter(patient=world.patient).count() == 1


def test_the_services_rules_show_next_to_their_fields_and_keep_the_values(world):
    start = timezone.localdate() + datetime.timedelta(days=5)
    earlier = start - datetime.timedelta(days=2)

    response = world.client_for("patient").post(
        PAGE,
        {
            "specialty": "allgemeinmedizin",
            "date_from": start.isoformat(),
            "date_to": earlier.isoformat(),
        },
    )

    assert response.status_code == 422
    assert 'id="id_date_to_error"' in response.text
    assert "Das Ende des Zeitraums liegt vor seinem Beginn." in response.text
    assert f'value="{start.isoformat()}"' in response.text
    assert '<option value="allgemeinmedizin" selected>' in response.text
    assert WaitlistEntry.objects.filter(patient=world.patient).count() == 1


def test_the_limit_is_a_form_error(world, settings):
    settings.PATTERM_WAITLIST_MAX_ENTRIES = 1

    response = world.client_for("patient").post(PAGE, {"specialty": "allgemeinmedizin"})

    assert response.status_code == 409
    assert 'role="alert"' in response.text
    assert "Warteliste" in response.text
    assert response.context["form"].non_field_errors()
    assert WaitlistEntry.objects.filter(patient=world.patient).count() == 1


def test_an_open_offer_links_to_the_offer_page(world, make_patient):
    owner = make_patient().user
    slot = slot_create(practitioner=world.doctor, starts_at=days_ahead(6, 9))
    appointment = appointment_book(patient=owner, slot_id=slot.public_id)
    appointment_cancel(actor=owner, appointment_id=appointment.pk)

    response = world.client_for("patient").get(PAGE)

    (offer,) = response.context["entries"][0].open_offers
    assert offer.slot == slot
    assert reverse("booking:waitlist_offer", kwargs={"offer_id": offer.pk}) in response.text


def test_leaving_says_so_and_the_empty_state_shows(world):
    client = world.client_for("patient")

    response = client.post(leave_url(world.entry), follow=True)

    assert response.status_code == 200
    assert list(response.context["entries"]) == []
    assert "Sie stehen auf keiner Warteliste." in response.text
    assert client.post(leave_url(world.entry)).status_code == 404  # left already


def test_the_list_paginates_and_its_queries_do_not_grow(
    world, settings, django_assert_max_num_queries
):
    settings.PATTERM_WAITLIST_MAX_ENTRIES = 100
    client = world.client_for("patient")
    with django_assert_max_num_queries(14) as few:
        client.get(PAGE)
    for _ in range(25):
        waitlist_join(patient=world.patient, specialty="allgemeinmedizin", city="Berlin")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(PAGE)
    second = client.get(PAGE, {"page": 2})

    assert len(response.context["entries"]) == 20
    assert response.context["page_obj"].paginator.num_pages == 2
    assert len(second.context["entries"]) == 6
