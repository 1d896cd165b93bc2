"""The consent journey across two browsers: the patient grants another clinic access, that
clinic's practitioner then sees the entry with basis "consent"; after the patient revokes it the
practitioner no longer does, and the patient's access log shows both reads, allowed and denied."""

import pytest
from playwright.sync_api import expect

from accounts.tests.factories import ClinicFactory
from booking.tests.factories import practitioner_create
from tests.e2e.conftest import shot
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def log_in(page, email: str) -> None:
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("button", name="Abmelden")).to_be_visible()


def test_a_consent_opens_the_record_to_another_clinic_until_it_is_revoked(new_page, make_patient):
    home = ClinicFactory(name="Hausarztpraxis Mitte", city="Berlin")
    doctor = practitioner_create(clinic=home, first_name="Anna", last_name="Berger")
    cardio = ClinicFactory(name="Kardiologie Potsdam", city="Potsdam")
    cardiologist = practitioner_create(
        clinic=cardio, specialties=("kardiologie",), first_name="Jonas", last_name="Herz"
    )
    patient = make_patient(email="lena.schulz@example.com").user
    record_entry_write(author=doctor, patient=patient, clinic=home, title="Asthma bronchiale")
    record_url = f"/staff/patients/{patient.pk}/"

    patient_page, practitioner_page = new_page(), new_page()
    log_in(patient_page, patient.email)
    log_in(practitioner_page, cardiologist.email)

    # Before any consent the other clinic sees nothing, not even that the record exists.
    practitioner_page.goto(record_url)
    expect(practitioner_page.get_by_text("Asthma bronchiale")).to_have_count(0)

    patient_page.goto("/consents/")
    patient_page.get_by_label("Praxis, die sehen darf").select_option(
        label="Kardiologie Potsdam (Potsdam)"
    )
    patient_page.get_by_label("Diagnose").check()
    patient_page.get_by_role("button", name="Einwilligung erteilen").click()
    expect(patient_page.get_by_text("Einwilligung erteilt.")).to_be_visible()

    practitioner_page.goto(record_url)
    entry = practitioner_page.locator(".card", has_text="Asthma bronchiale")
    expect(entry).to_be_visible()
    expect(entry).to_contain_text("Grundlage: Einwilligung")
    shot(practitioner_page, "journey-practitioner-reads-with-consent")

    patient_page.get_by_role("row", name="Kardiologie Potsdam").get_by_role(
        "button", name="Widerrufen"
    ).click()
    expect(patient_page.get_by_text("Einwilligung widerrufen.")).to_be_visible()

    practitioner_page.goto(record_url)
    expect(practitioner_page.get_by_text("Asthma bronchiale")).to_have_count(0)
    expect(practitioner_page.get_by_role("heading", name="Keine Akte anzuzeigen")).to_be_visible()
    shot(practitioner_page, "journey-practitioner-refused-after-revocation")

    patient_page.goto("/access-log/")
    log = patient_page.locator("table.access-log")
    allowed = log.locator("tbody tr", has_text="Einwilligung der Patient:in")
    expect(allowed.first).to_contain_text("Behandler:in, Kardiologie Potsdam")
    expect(log.locator("tbody tr").first).to_contain_text("Verweigert")
    expect(log).not_to_contain_text("Herz")
    shot(patient_page, "journey-access-log")
