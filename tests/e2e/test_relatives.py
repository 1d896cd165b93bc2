"""A parent books for their child in a real browser (decision 0014): adds the child on "Meine
Angehörigen", books a 40-minute paediatric check-up (two slots) choosing the child under "Für
wen", sees the confirmation for the child, and reads the child's access log, where the booking
and the read of the record show with the parent as "Kontoinhaber:in"; the practitioner's
schedule says who booked."""

import re

import pytest
from playwright.sync_api import expect

from accounts.tests.factories import ClinicFactory
from booking.models import Appointment, VisitMotive
from booking.tests.factories import (
    days_ahead,
    membership_of,
    practitioner_create,
    slot_create,
    specialty_get,
)
from consent.models import RelativeLink
from tests.e2e.conftest import assert_accessible, shot

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def log_in(page, email: str) -> None:
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("button", name="Abmelden")).to_be_visible()


def nav(page, name: str):
    return page.get_by_role("navigation", name="Hauptnavigation").get_by_role("link", name=name)


def test_a_parent_books_for_a_child_and_reads_the_childs_access_log(new_page, make_patient):
    clinic = ClinicFactory(
        name="Kinderarztpraxis Eppendorf", city="Hamburg", address="Eppendorfer Landstraße 31"
    )
    paediatrician = practitioner_create(
        clinic=clinic, specialties=("kinderheilkunde",), first_name="Sophie", last_name="Hansen"
    )
    slot = slot_create(
        practitioner=paediatrician, specialty_slug="kinderheilkunde", starts_at=days_ahead(4, 9)
    )
    following = slot_create(
        practitioner=paediatrician, specialty_slug="kinderheilkunde", starts_at=slot.ends_at
    )
    u_check = VisitMotive.objects.create(
        membership=membership_of(paediatrician),
        specialty=specialty_get("kinderheilkunde"),
        name_de="U-Untersuchung",
        name_en="Check-up (U)",
        duration_minutes=40,
        note_de="Bitte das gelbe Heft mitbringen.",
    )
    parent = make_patient(email="eltern@example.com").user
    page = new_page()
    log_in(page, parent.email)

    nav(page, "Angehörige").click()
    expect(page.get_by_role("heading", name="Meine Angehörigen")).to_be_visible()
    expect(page.get_by_text("Sie haben noch keine Angehörigen hinzugefügt.")).to_be_visible()
    page.get_by_label("Vorname").fill("Mia")
    page.get_by_label("Nachname").fill("Muster")
    page.get_by_label("Geburtsdatum").fill("2019-05-14")
    page.get_by_label("Beziehung").select_option("child")
    page.get_by_role("button", name="Hinzufügen").click()
    expect(page.get_by_role("heading", name="Mia Muster")).to_be_visible()
    child_id = RelativeLink.objects.get(holder=parent).relative_id
    shot(page, "relatives-child-page")
    assert_accessible(page)

    # Book the paediatric check-up (40 minutes: two 20-minute slots) for Mia.
    page.goto(f"/book/{slot.public_id}/?motive={u_check.pk}")
    expect(page.get_by_role("heading", name="Termin buchen")).to_be_visible()
    expect(page.get_by_text("Bitte das gelbe Heft mitbringen.")).to_be_visible()
    page.get_by_label("Für wen").select_option(label="Mia Muster")
    page.get_by_label("Anlass des Besuchs").fill("U9")
    shot(page, "relatives-book-for-whom")
    assert_accessible(page)
    page.get_by_role("button", name="Jetzt buchen").click()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Mia Muster")
    expect(facts).to_contain_text("Kinderarztpraxis Eppendorf")
    appointment = Appointment.objects.get()
    assert (appointment.patient_id, appointment.booked_by_id) == (child_id, parent.pk)
    assert appointment.motive_id == u_check.pk
    assert set(appointment.occupied_slots.values_list("slot_id", flat=True)) == {
        slot.pk,
        following.pk,
    }

    # The parent's own appointments stay theirs; Mia's are one tab away.
    nav(page, "Meine Termine").click()
    expect(page.get_by_text("Sie haben keine anstehenden Termine.")).to_be_visible()
    page.get_by_role("navigation", name="Für wen").get_by_role("link", name="Mia").click()
    expect(page.get_by_role("heading", name="Termine von Mia")).to_be_visible()
    expect(page.locator(".card.appointment")).to_contain_text("Kinderarztpraxis Eppendorf")

    # Mia's page reads her record (audited), then her access log shows what the parent did.
    page.goto(f"/relatives/{child_id}/")
    page.locator("#content").get_by_role("link", name="Zugriffsprotokoll").click()
    expect(page.get_by_role("heading", name="Zugriffsprotokoll von Mia")).to_be_visible()
    log = page.locator("table.access-log")
    booked = log.locator("tbody tr", has_text="Termin gebucht")
    expect(booked).to_contain_text("Kontoinhaber:in")
    read = log.locator("tbody tr", has_text="Patientenakte gelesen")
    expect(read.first).to_contain_text("Kontoinhaber:in, für Sie handelnd")
    expect(log).not_to_contain_text("eltern@example.com")
    # Every entry names its place in the audit log (integrated at commit on SQLite, or still
    # being added); a signed one offers its proof.
    expect(read.first.locator(".access-log__leaf")).to_contain_text(
        re.compile(r"Eintrag \d+|wird eingetragen")
    )
    shot(page, "relatives-child-access-log")
    assert_accessible(page)
    nav(page, "Angehörige").click()
    assert_accessible(page)

    # The paediatrician's schedule shows Mia, booked by her account holder.
    doctor_page = new_page()
    doctor_page.goto("/account/login/")
    doctor_page.get_by_label("E-Mail-Adresse").fill(paediatrician.email)
    doctor_page.get_by_label("Passwort").fill(PASSWORD)
    doctor_page.get_by_role("button", name="Anmelden").click()
    doctor_page.goto(f"/staff/schedule/?date_from={days_ahead(4, 0).date().isoformat()}")
    expect(doctor_page.get_by_text("Mia Muster")).to_be_visible()
    expect(
        doctor_page.get_by_text("von der Kontoinhaber:in für diese:n Angehörige:n gebucht")
    ).to_be_visible()
