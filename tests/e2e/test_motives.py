"""Visit motives in a real browser (issue 16): a clinic admin creates a motive that then
appears in search and on the practitioner's page, and is booked there; the week view of the
search fits a phone."""

import pytest
from playwright.sync_api import expect

from booking.models import Appointment, Slot, VisitMotive
from booking.tests.factories import days_ahead
from patterm.tests.staff_world import PASSWORD, world_build
from tests.e2e.conftest import assert_accessible, shot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(make_patient):
    return world_build(make_patient, emergency=False)


def log_in(page, email):
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()


def free_row(world, count=3):
    """Back-to-back 20-minute slots of the north clinic's doctor, four days ahead."""
    membership = world.hours_north.membership
    start = days_ahead(4, 9)
    for n in range(count):
        starts_at = start + n * (days_ahead(0, 0, 20) - days_ahead(0, 0))
        Slot.objects.create(
            clinic=membership.clinic,
            practitioner=membership.user,
            specialty=world.hours_north.specialty,
            starts_at=starts_at,
            ends_at=starts_at + (days_ahead(0, 0, 20) - days_ahead(0, 0)),
        )


def test_a_clinic_admin_creates_a_motive_that_then_appears_in_search(world, new_page, make_patient):
    free_row(world)
    admin = new_page()
    log_in(admin, world.users["clinic_admin"].email)
    admin.get_by_role("link", name="Besuchsgründe").first.click()
    expect(admin.get_by_role("heading", name="Besuchsgründe")).to_be_visible()
    admin.get_by_label("Behandler:in").select_option(str(world.hours_north.membership.pk))
    admin.get_by_label("Fachrichtung").select_option(str(world.hours_north.specialty.pk))
    admin.get_by_label("Name (Deutsch)").fill("Impfung")
    admin.get_by_label("Name (Englisch)").fill("Vaccination")
    admin.get_by_label("Dauer (Minuten)").fill("10")
    admin.get_by_label("Privat versichert").uncheck()
    admin.get_by_label("Selbstzahler:innen").uncheck()
    admin.get_by_label("Hinweis vor der Buchung (Deutsch)").fill("Bitte Impfpass mitbringen")
    assert_accessible(admin)
    shot(admin, "staff-motive-new")
    admin.get_by_role("button", name="Hinzufügen").click()
    expect(admin.get_by_text("Der Besuchsgrund wurde angelegt.")).to_be_visible()
    expect(admin.get_by_role("rowheader", name="Impfung Bitte Impfpass mitbringen")).to_be_visible()
    motive = VisitMotive.objects.get(name_de="Impfung")

    visitor = new_page()
    visitor.goto("/")
    visitor.get_by_label("Versicherung").select_option("gesetzlich")
    visitor.get_by_role("button", name="Suchen").click()
    card = visitor.get_by_role("article").filter(has_text="Nordarzt")
    expect(card).to_contain_text("Termine für Impfung (10 Min.)")
    expect(card).to_contain_text("Bitte Impfpass mitbringen")
    assert_accessible(visitor)
    shot(visitor, "patient-search-motive")
    # Privately insured: the motive is not for them, the 40-minute one is (two of three slots).
    visitor.get_by_label("Versicherung").select_option("privat")
    visitor.get_by_role("button", name="Suchen").click()
    card = visitor.get_by_role("article").filter(has_text="Nordarzt")
    expect(card).to_contain_text("Erstuntersuchung Nordarzt")
    expect(card.locator(".week__time")).to_have_count(2)

    card.get_by_role("link", name="Nora Nordarzt").click()
    expect(visitor.get_by_role("heading", name="Besuchsgründe")).to_be_visible()
    visitor.get_by_role("link", name="Impfung").click()
    expect(visitor.locator(".week__time")).to_have_count(3)
    assert_accessible(visitor)  # the practitioner's page

    patient = make_patient(email="lena@example.com").user
    log_in(visitor, patient.email)
    visitor.goto(f"/practitioners/{world.hours_north.membership.pk}/?motive={motive.pk}")
    visitor.locator(".week__time").first.click()
    expect(visitor.get_by_text("Bitte Impfpass mitbringen")).to_be_visible()
    assert_accessible(visitor)  # the booking form with the motive's note
    visitor.get_by_label("Versicherung").select_option("gesetzlich")
    visitor.get_by_role("button", name="Jetzt buchen").click()
    expect(visitor.get_by_text("Ihr Termin ist gebucht.")).to_be_visible()
    assert Appointment.objects.get(patient=patient).motive == motive


def test_the_week_view_fits_a_phone(world, new_page):
    free_row(world, count=6)
    page = new_page()
    page.set_viewport_size({"width": 360, "height": 780})
    page.goto("/")

    card = page.get_by_role("article").filter(has_text="Nordarzt")
    expect(card.locator(".week__day")).to_have_count(7)
    expect(card.locator(".week__time").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    box = card.locator(".week__time").first.bounding_box()
    assert box["height"] >= 24, box  # a tap target, not a sliver
    assert_accessible(page)
    shot(page, "patient-search-week-phone")
