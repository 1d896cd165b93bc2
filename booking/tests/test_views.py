"""The patient's booking pages: who may open them, search, book, my appointments, cancel with
the cut-off, the calendar file, the export downloads and the erasure request; and the offer
page the waitlist e-mail links to (the patient's own offer only, confirmed or declined with a
CSRF-protected POST form)."""

import datetime
import json

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from icalendar import Calendar

from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from booking.models import Appointment, AppointmentStatus, OfferStatus, WaitlistOffer
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from booking.tests.portal import PASSWORD, ROLES, expected, portal_world
from booking.waitlist import offer_url, waitlist_join
from vault.models import ErasureRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_patient):
    return portal_world(make_patient)


PAGES = {
    "home": (lambda w: reverse("home"), {"default": 200, "patient": 200}),
    "book": (
        lambda w: reverse("booking:book", kwargs={"slot_id": w.free_slot.public_id}),
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
    "book_unknown_slot": (
        lambda w: reverse("booking:book", kwargs={"slot_id": "slot-999999"}),
        {"anonymous": 302, "patient": 404, "staff": 403},
    ),
    "appointments": (
        lambda w: reverse("booking:appointments"),
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
    "appointments_past": (
        lambda w: reverse("booking:appointments") + "?when=past",
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
    "appointment_own": (
        lambda w: reverse("booking:appointment", kwargs={"appointment_id": w.appointment.pk}),
        {"anonymous": 302, "patient": 200, "other_patient": 404, "staff": 403},
    ),
    "ics_own": (
        lambda w: reverse("booking:ics", kwargs={"appointment_id": w.appointment.pk}),
        {"anonymous": 302, "patient": 200, "other_patient": 404, "staff": 403},
    ),
    "export_json": (
        lambda w: reverse("booking:export", kwargs={"format": "json"}),
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
    "export_fhir": (
        lambda w: reverse("booking:export", kwargs={"format": "fhir"}),
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
    "erasure": (
        lambda w: reverse("booking:erasure"),
        {"anonymous": 302, "patient": 200, "staff": 403},
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_answers_each_role_as_expected(world, page, role):
    url_of, table = PAGES[page]
    url = url_of(world)

    response = world.client_for(role).get(url)

    assert response.status_code == expected(table, role), (page, role)
    if response.status_code == 302:
        assert response.url.startswith(reverse("accounts:login") + "?next=")
    if response.status_code in (403, 404):
        assert "Traceback" not in response.text
        assert "Erika" not in response.text and "Max" not in response.text


@pytest.mark.parametrize("role", ["other_patient", "practitioner", "auditor"])
def test_nobody_else_cancels_the_patients_appointment(world, role):
    url = reverse("booking:cancel", kwargs={"appointment_id": world.appointment.pk})

    response = world.client_for(role).post(url)

    assert response.status_code == (404 if role == "other_patient" else 403)
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.BOOKED


def card_times(response, membership_pk=None) -> list[str]:
    """The public ids of the start times on the cards (of one practitioner)."""
    return [
        slot.public_id
        for card in response.context["cards"]
        if membership_pk is None or card.membership.pk == membership_pk
        for day in card.days
        for slot in day["slots"]
    ]


def test_the_start_page_shows_practitioners_with_a_week_of_free_times(world, client):
    page = client.get(reverse("home"))

    assert page.status_code == 200
    (card,) = page.context["cards"]
    assert card.membership.user == world.doctor
    assert [day["day"] for day in card.days] == [
        timezone.localdate() + datetime.timedelta(days=n) for n in range(7)
    ]
    # The booked slots (the two appointments) are not offered; the free one is, on its day.
    assert card_times(page) == [world.free_slot.public_id]
    assert world.appointment.slot.public_id not in page.text
    day = timezone.localtime(world.free_slot.starts_at).date()
    assert [d["slots"] for d in card.days if d["day"] == day] == [[world.free_slot]]
    assert world.clinic.address in page.text


def test_the_search_filters_by_specialty_city_and_week(world, client):
    hamburg = ClinicFactory(name="Hautarzt Hamburg", city="Hamburg")
    skin = practitioner_create(clinic=hamburg, specialties=("dermatologie",))
    later = slot_create(
        practitioner=skin, specialty_slug="dermatologie", starts_at=days_ahead(9, 10)
    )
    sooner = slot_create(
        practitioner=skin, specialty_slug="dermatologie", starts_at=days_ahead(5, 10)
    )

    by_city = client.get(reverse("home"), {"city": "Hamburg"})
    by_specialty = client.get(reverse("home"), {"specialty": "dermatologie"})
    next_week = client.get(
        reverse("home"), {"specialty": "dermatologie", "date": days_ahead(7, 0).date().isoformat()}
    )

    assert [c.membership.user for c in by_city.context["cards"]] == [skin]
    assert card_times(by_city) == [sooner.public_id]
    assert card_times(by_specialty) == [sooner.public_id]
    assert card_times(next_week) == [later.public_id]
    assert 'value="Hamburg" selected' in by_city.text


def test_a_week_without_times_says_when_the_next_free_appointment_is(world, client):
    from booking.models import Slot

    Slot.objects.filter(pk=world.free_slot.pk).delete()
    far = slot_create(practitioner=world.doctor, starts_at=days_ahead(20, 11))

    page = client.get(reverse("home"))

    (card,) = page.context["cards"]
    assert card_times(page) == []
    assert card.next_free == far.starts_at
    assert "Nächster freier Termin am" in page.text


def test_a_search_without_results_says_so(world, client):
    response = client.get(reverse("home"), {"city": "Hamburg"})

    assert response.context["cards"] == []
    assert "Keine freien Termine" in response.text


def test_an_unknown_choice_is_shown_next_to_the_field(world, client):
    response = client.get(reverse("home"), {"specialty": "gibt-es-nicht", "date": "morgen"})

    assert response.status_code == 200
    assert 'id="id_specialty_error"' in response.text
    assert 'id="id_date_error"' in response.text
    assert 'value="morgen"' in response.text


def test_the_search_pages_by_practitioner_and_its_queries_do_not_grow_with_them(
    world, client, django_assert_max_num_queries
):
    from booking.views import PRACTITIONERS_PER_PAGE

    def add_practitioner(number):
        doctor = practitioner_create(clinic=world.clinic, last_name=f"Zeller{number:02d}")
        day = 20 if number % 3 == 2 else 2  # every third: nothing this week, "next free on"
        for step in range(3):
            slot_create(practitioner=doctor, starts_at=days_ahead(day, 8, 20 * step))
        if number % 2:  # half have a 40-minute motive: their times come from the chain
            from booking.models import VisitMotive
            from booking.tests.factories import membership_of, specialty_get

            VisitMotive.objects.create(
                membership=membership_of(doctor),
                specialty=specialty_get(),
                name_de="Erst",
                name_en="First",
                duration_minutes=40,
            )

    for number in range(3):
        add_practitioner(number)
    with django_assert_max_num_queries(12) as few:
        small = client.get(reverse("home"))
    assert len(small.context["cards"]) == 4
    for number in range(3, PRACTITIONERS_PER_PAGE + 4):
        add_practitioner(number)
    with django_assert_max_num_queries(len(few.captured_queries)):
        first = client.get(reverse("home"))
    second = client.get(reverse("home"), {"page": 2})

    assert len(first.context["cards"]) == PRACTITIONERS_PER_PAGE
    assert first.context["page_obj"].paginator.num_pages == 2
    assert 'rel="next"' in first.text
    assert len(second.context["cards"]) == 5  # the world's doctor and 14 more, 10 a page
    with_motive = [c for c in first.context["cards"] if c.motive and c.has_times]
    # 40 minutes fit from the first and second of three 20-minute slots in a row.
    assert with_motive and all(
        len([s for d in c.days for s in d["slots"]]) == 2 for c in with_motive
    )
    assert all(c.next_free for c in first.context["cards"] if not c.has_times)


def test_an_anonymous_booker_logs_in_and_comes_back_to_the_slot(world):
    client = Client()
    book_url = reverse("booking:book", kwargs={"slot_id": world.free_slot.public_id})

    to_login = client.get(book_url)
    login = client.get(to_login.url)
    back = client.post(
        reverse("accounts:login"),
        {"email": world.patient.email, "password": PASSWORD, "next": book_url},
    )

    assert reverse("vault:signup") in login.text
    assert back.url == book_url
    assert client.get(back.url).status_code == 200


def test_booking_with_a_reason_leads_to_the_confirmation(world):
    client = world.client_for("patient")
    url = reverse("booking:book", kwargs={"slot_id": world.free_slot.public_id})

    response = client.post(url, {"reason": "Husten seit zwei Wochen"}, follow=True)

    appointment = Appointment.objects.get(slot=world.free_slot, status=AppointmentStatus.BOOKED)
    assert appointment.patient == world.patient
    assert appointment.reason == "Husten seit zwei Wochen"
    assert response.redirect_chain[-1][0] == reverse(
        "booking:appointment", kwargs={"appointment_id": appointment.pk}
    )
    assert "Ihr Termin ist gebucht" in response.text
    assert "Husten seit zwei Wochen" in response.text
    assert reverse("booking:ics", kwargs={"appointment_id": appointment.pk}) in response.text
    event = AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_BOOK).latest("seq")
    assert event.object_id == str(appointment.pk)


def test_a_slot_taken_meanwhile_is_a_clear_409_with_the_way_back(world):
    client = world.client_for("patient")
    url = reverse("booking:book", kwargs={"slot_id": world.free_slot.public_id})
    assert client.get(url).status_code == 200
    appointment_book(patient=world.other_patient, slot_id=world.free_slot.public_id)

    response = client.post(url, {"reason": "Kopfschmerzen"})

    assert response.status_code == 409
    assert "gerade von jemand anderem gebucht" in response.text
    assert 'role="alert"' in response.text
    assert f'href="{reverse("home")}"' in response.text
    assert not Appointment.objects.filter(patient=world.patient, slot=world.free_slot).exists()
    # Opening the page again says it is gone, without a booking form.
    again = client.get(url)
    assert "nicht mehr frei" in again.text
    assert "Jetzt buchen" not in again.text


def test_a_too_long_reason_stays_in_the_form_with_its_error(world):
    client = world.client_for("patient")
    url = reverse("booking:book", kwargs={"slot_id": world.free_slot.public_id})

    response = client.post(url, {"reason": "x" * 501})

    assert response.status_code == 200
    assert 'id="id_reason_error"' in response.text
    assert "x" * 501 in response.text


def test_my_appointments_upcoming_and_past_with_empty_states(world):
    client = world.client_for("patient")
    with time_machine.travel(world.appointment.starts_at - datetime.timedelta(days=30)):
        slot = slot_create(practitioner=world.doctor, starts_at=days_ahead(3, 9))
        earlier = appointment_book(patient=world.patient, slot_id=slot.public_id)
    upcoming = client.get(reverse("booking:appointments"))
    past = client.get(reverse("booking:appointments"), {"when": "past"})
    empty = world.client_for("other_patient").get(reverse("booking:appointments"), {"when": "past"})

    assert [r["appointment"] for r in upcoming.context["rows"]] == [world.appointment]
    assert [r["appointment"] for r in past.context["rows"]] == [earlier]
    assert "Sie haben keine vergangenen Termine." in empty.text


def test_past_appointments_are_listed_latest_first(world):
    client = world.client_for("patient")
    with time_machine.travel(world.appointment.starts_at + datetime.timedelta(days=1)):
        client = world.client_for("patient")  # a fresh session: sessions end when idle
        response = client.get(reverse("booking:appointments"), {"when": "past"})
        upcoming = client.get(reverse("booking:appointments"))

    assert [r["appointment"] for r in response.context["rows"]] == [world.appointment]
    assert "Sie haben keine anstehenden Termine." in upcoming.text


def test_my_appointments_queries_do_not_grow(world, django_assert_max_num_queries):
    client = world.client_for("patient")
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("booking:appointments"))
    for number in range(25):
        slot = slot_create(
            practitioner=world.doctor, starts_at=days_ahead(40 + number // 8, 8 + number % 8)
        )
        appointment_book(patient=world.patient, slot_id=slot.public_id)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("booking:appointments"))

    assert len(response.context["rows"]) == 20
    assert response.context["page_obj"].paginator.num_pages == 2


def test_cancel_before_the_cut_off_frees_the_slot(world):
    client = world.client_for("patient")
    url = reverse("booking:cancel", kwargs={"appointment_id": world.appointment.pk})

    response = client.post(url, follow=True)

    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.CANCELLED
    assert response.redirect_chain[-1][0] == reverse("booking:appointments")
    assert "Ihr Termin ist abgesagt" in response.text


def test_after_the_cut_off_the_button_gives_way_to_the_explanation(world):
    client = world.client_for("patient")
    detail = reverse("booking:appointment", kwargs={"appointment_id": world.appointment.pk})
    cancel = reverse("booking:cancel", kwargs={"appointment_id": world.appointment.pk})
    before = client.get(detail)
    with time_machine.travel(world.appointment.starts_at - datetime.timedelta(hours=23)):
        client = world.client_for("patient")  # a fresh session: sessions end when idle
        after = client.get(detail)
        listed = client.get(reverse("booking:appointments"))
        refused = client.post(cancel, follow=True)

    assert cancel in before.text
    assert "(24 Stunden vorher)" in before.text
    assert cancel not in after.text
    assert "nicht mehr möglich" in after.text
    assert cancel not in listed.text
    assert "nicht mehr möglich" in listed.text
    assert "Bitte rufen Sie die Praxis an." in refused.text
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.BOOKED


def test_the_calendar_download_is_the_apis_ics(world):
    client = world.client_for("patient")

    response = client.get(reverse("booking:ics", kwargs={"appointment_id": world.appointment.pk}))

    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="termin-{world.appointment.pk}.ics"'
    )
    (event,) = Calendar.from_ical(response.content).walk("VEVENT")
    assert event.decoded("dtstart") == world.appointment.starts_at
    assert world.clinic.name in str(event["location"])


@pytest.mark.parametrize(
    ("format", "filename", "content_type"),
    [
        ("json", "patterm-export.json", "application/json"),
        ("fhir", "patterm-export.fhir.json", "application/fhir+json"),
    ],
)
def test_the_export_downloads_are_the_apis(world, format, filename, content_type):
    client = world.client_for("patient")
    before = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).count()

    response = client.get(reverse("booking:export", kwargs={"format": format}))

    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    body = json.loads(response.content)
    if format == "json":
        assert body["format"] == "patterm-patient-export/v1"
        assert body["profile"]["email"] == world.patient.email
        assert len(body["appointments"]) == 1
    else:
        assert body["resourceType"] == "Bundle"
    assert AuditEvent.objects.filter(action=AuditAction.RECORD_READ).count() == before + 1


def test_an_unknown_export_format_is_not_found(world):
    response = world.client_for("patient").get("/record/export/xml/")

    assert response.status_code == 404


def test_erasure_explains_the_retention_and_needs_the_tick(world):
    client = world.client_for("patient")
    url = reverse("booking:erasure")

    page = client.get(url)
    unticked = client.post(url, {})

    keep = timezone.localdate().replace(year=timezone.localdate().year + 10)
    assert page.context["retain_until"] == keep
    assert "10 Jahre" in page.text
    assert unticked.status_code == 200
    assert 'id="id_confirm_error"' in unticked.text
    world.patient.refresh_from_db()
    assert world.patient.is_active
    assert not ErasureRequest.objects.filter(patient=world.patient).exists()


def test_confirmed_erasure_closes_the_account_and_logs_out(world):
    client = world.client_for("patient")

    response = client.post(reverse("booking:erasure"), {"confirm": "on"}, follow=True)

    world.patient.refresh_from_db()
    world.appointment.refresh_from_db()
    assert not world.patient.is_active
    assert ErasureRequest.objects.filter(patient=world.patient).count() == 1
    assert world.appointment.status == AppointmentStatus.CANCELLED
    assert "_auth_user_id" not in client.session
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "Ihr Konto ist geschlossen" in response.text
    assert client.get(reverse("booking:appointments")).status_code == 302


# --- The waitlist offer page ------------------------------------------------------------------


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


def test_a_slot_held_by_the_waitlist_is_neither_listed_nor_bookable_for_others(world):
    from booking.models import Slot

    Slot.objects.filter(pk=world.free_slot.pk).update(
        held_for=world.other_patient, held_until=timezone.now() + datetime.timedelta(hours=1)
    )
    url = reverse("booking:book", kwargs={"slot_id": world.free_slot.public_id})

    search = world.client_for("patient").get(reverse("home"))
    page = world.client_for("patient").get(url)

    assert world.free_slot.public_id not in search.text
    assert "nicht mehr frei" in page.text
    assert "Jetzt buchen" not in page.text
