"""My waitlist: a patient joins a waitlist with the form, sees the entry and leaves it."""

import pytest
from playwright.sync_api import expect

from booking.models import WaitlistEntry, WaitlistStatus
from booking.tests.factories import practitioner_create
from tests.e2e.conftest import shot

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def test_a_patient_joins_the_waitlist_sees_the_entry_and_leaves_it(page, make_patient):
    practitioner_create()  # a clinic (Berlin) and the specialty Allgemeinmedizin
    patient = make_patient(email="erika@example.com").user
    page.goto("/account/login/?next=/waitlist/")
    page.get_by_label("E-Mail-Adresse").fill(patient.email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    expect(page.get_by_role("heading", name="Meine Warteliste")).to_be_visible()
    expect(page.get_by_text("Sie stehen auf keiner Warteliste.")).to_be_visible()
    page.get_by_role("button", name="Auf die Warteliste").click()
    expect(page.locator("#id_specialty_error")).to_be_visible()

    page.get_by_label("Fachrichtung").select_option("allgemeinmedizin")
    page.get_by_role("button", name="Auf die Warteliste").click()

    expect(page.get_by_role("status")).to_contain_text("Sie stehen auf der Warteliste")
    entry = page.locator(".waitlist-entry")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("Allgemeinmedizin")
    shot(page, "patient-waitlist")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    entry.get_by_role("button", name="Warteliste verlassen").click()

    expect(page.get_by_text("Sie stehen auf keiner Warteliste.")).to_be_visible()
    assert WaitlistEntry.objects.get(patient=patient).status == WaitlistStatus.LEFT
