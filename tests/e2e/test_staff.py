"""The staff half of the portal in a real browser: a practitioner's schedule, record, entry and
emergency access; a clinic admin's pages and Django admin; an auditor's log and verification.
Each page is saved once as a screenshot (var/e2e-screenshots/staff-*.png)."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from consent.models import EmergencyAccess
from patterm.tests.staff_world import (
    ENTRY_TITLE,
    JUSTIFICATION,
    MARKERS,
    P_FIRST,
    P_LAST,
    PASSWORD,
    world_build,
)
from tests.e2e.conftest import shot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(make_patient):
    return world_build(make_patient, emergency=False)


def log_in(page, user):
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(user.email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()


def test_a_practitioner_reads_writes_and_declares_emergency_access(world, page):
    log_in(page, world.users["practitioner"])

    expect(page.get_by_role("heading", name="Mein Terminplan")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^Heute"))).to_be_visible()
    shot(page, "staff-schedule")
    page.get_by_role("link", name=f"{P_FIRST} {P_LAST}").first.click()

    expect(page.get_by_role("heading", name=re.compile("Akte von Patient:in Nr."))).to_be_visible()
    expect(page.get_by_text(ENTRY_TITLE)).to_be_visible()
    expect(page.get_by_text("Grundlage: eigene Praxis")).to_be_visible()
    shot(page, "staff-record")

    page.get_by_label("Kategorie").select_option("medication")
    page.get_by_label("Titel").fill("Ramipril 5 mg")
    page.get_by_role("button", name="Eintrag speichern").click()
    expect(page.get_by_text("Bitte korrigieren Sie")).to_be_visible()
    expect(page.get_by_label("Titel")).to_have_value("Ramipril 5 mg")
    page.locator("#id_body").fill("1-0-0, Kontrolle in vier Wochen.")
    page.get_by_role("button", name="Eintrag speichern").click()
    expect(page.get_by_text("Der Eintrag wurde gespeichert.")).to_be_visible()
    expect(page.get_by_role("heading", name="Ramipril 5 mg")).to_be_visible()
    shot(page, "staff-entry-written")

    page.get_by_role("link", name="Patient:innenakte").click()
    page.get_by_label("Patient:innen-Nummer").fill(str(world.patient_q.pk))
    shot(page, "staff-patient-lookup")
    page.get_by_role("button", name="Akte öffnen").click()
    expect(page.get_by_role("heading", name="Keine Akte anzuzeigen")).to_be_visible()
    shot(page, "staff-record-not-found")

    page.get_by_role("link", name="Notfallzugriff erklären").click()
    page.get_by_label("Begründung").fill("Zu kurz")
    page.get_by_role("button", name="Notfallzugriff erklären").click()
    expect(page.locator("#id_justification_error")).to_be_visible()
    expect(page.get_by_label("Begründung")).to_have_value("Zu kurz")
    shot(page, "staff-emergency-form")
    page.get_by_label("Begründung").fill(JUSTIFICATION)
    page.get_by_role("button", name="Notfallzugriff erklären").click()

    access = EmergencyAccess.objects.get(patient=world.patient_q)
    end = timezone.localtime(access.expires_at).strftime("%H:%M")
    banner = page.locator(".emergency-banner")
    expect(banner).to_contain_text("Notfallzugriff aktiv")
    expect(banner).to_contain_text(end)
    expect(page.get_by_text(re.compile("Notfallzugriff erklärt. Er endet am"))).to_be_visible()
    shot(page, "staff-emergency-active")
    page.get_by_role("link", name="Mein Terminplan").click()
    expect(page.locator(".emergency-banner")).to_contain_text(end)


def test_the_schedule_fits_a_phone(world, new_page):
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, world.users["practitioner"])

    expect(page.get_by_role("heading", name="Mein Terminplan")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "staff-schedule-phone")


def test_a_clinic_admin_runs_the_clinic_and_the_admin_shows_only_it(world, page):
    log_in(page, world.users["clinic_admin"])

    expect(page.get_by_role("heading", name="Praxis-Übersicht")).to_be_visible()
    expect(page.get_by_text(f"{P_FIRST} {P_LAST}").first).to_be_visible()
    shot(page, "staff-clinic-dashboard")

    page.get_by_role("link", name="Sprechzeiten").first.click()
    expect(page.get_by_role("heading", name="Sprechzeiten", exact=True)).to_be_visible()
    shot(page, "staff-opening-hours")
    page.get_by_role("link", name="Abwesenheiten").first.click()
    expect(page.get_by_role("heading", name="Abwesenheiten")).to_be_visible()
    shot(page, "staff-absences")

    page.get_by_role("link", name="Termine erzeugen").first.click()
    day = (timezone.localdate() + timezone.timedelta(days=21)).isoformat()
    page.get_by_label("Behandler:in").select_option(str(world.membership("practitioner").pk))
    page.get_by_label("Fachrichtung").select_option(label="Allgemeinmedizin")
    page.get_by_label("Erster Tag").fill(day)
    page.get_by_label("Letzter Tag").fill(day)
    page.get_by_label("Täglich von").fill("09:00")
    page.get_by_label("Täglich bis").fill("10:00")
    for weekday in range(7):
        page.locator(f"#id_weekdays_{weekday}").check()
    page.get_by_role("button", name="Termine erzeugen").click()
    expect(page.get_by_text("3 Termine wurden angelegt.")).to_be_visible()
    shot(page, "staff-slots")

    page.get_by_role("link", name="Notfallzugriffe").first.click()
    expect(page.get_by_role("heading", name="Notfallzugriffe")).to_be_visible()
    shot(page, "staff-emergency-review")

    page.goto("/admin/booking/appointment/")
    expect(page.locator("#result_list")).to_be_visible()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("verschlüsselt")
    for marker in MARKERS:
        expect(page.locator("body")).not_to_contain_text(marker)
    shot(page, "admin-appointments")
    page.goto("/admin/booking/openinghours/")
    expect(page.locator("#result_list")).to_contain_text("Praxis Nord")
    expect(page.locator("#result_list")).not_to_contain_text("Praxis Süd")
    shot(page, "admin-opening-hours")


def test_an_auditor_filters_the_log_and_verifies_the_chain(world, page):
    log_in(page, world.users["auditor"])

    expect(page.get_by_role("heading", name="Prüfprotokoll")).to_be_visible()
    page.get_by_label("Aktion").select_option("record.write")
    page.get_by_role("button", name="Filtern").click()
    expect(page.locator(".audit-table tbody tr")).to_have_count(1)
    for marker in MARKERS:
        expect(page.locator("body")).not_to_contain_text(marker)
    shot(page, "staff-audit-events")

    page.get_by_role("link", name="Kette prüfen").click()
    page.get_by_role("button", name="Jetzt prüfen").click()
    expect(page.get_by_role("status").filter(has_text="Intakt:")).to_be_visible()
    shot(page, "staff-audit-verify")
