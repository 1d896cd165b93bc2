"""The patient's way through the portal in a real browser: sign up, search, book, the
appointment and its calendar file, cancel, consents, the access log, the record, erasure; a
failed sign-up that keeps what was typed; the search on a phone."""

import json
from pathlib import Path

import pytest
from icalendar import Calendar
from playwright.sync_api import expect

from accounts.models import User
from accounts.tests.factories import ClinicFactory
from audit import signing
from audit.integrator import checkpoint_create
from audit.models import AuditEvent
from audit.verify_export import inclusion_verify
from booking.models import Appointment
from booking.services import appointment_book
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from tests.e2e.conftest import shot
from vault.services import practitioner_record_read
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


@pytest.fixture
def clinics():
    """A GP in Berlin with free slots, and a cardiologist's clinic in Potsdam."""
    home = ClinicFactory(name="Hausarztpraxis Mitte", city="Berlin", address="Torstraße 1, Berlin")
    doctor = practitioner_create(clinic=home, first_name="Anna", last_name="Berger")
    cardio = ClinicFactory(name="Kardiologie Potsdam", city="Potsdam", address="Am Kanal 2")
    cardiologist = practitioner_create(
        clinic=cardio, specialties=("kardiologie",), first_name="Jonas", last_name="Herz"
    )
    slots = [slot_create(practitioner=doctor, starts_at=days_ahead(4, hour)) for hour in (9, 10)]
    slot_create(practitioner=cardiologist, specialty_slug="kardiologie", starts_at=days_ahead(4, 9))
    return {
        "home": home,
        "doctor": doctor,
        "cardio": cardio,
        "cardiologist": cardiologist,
        "slots": slots,
    }


def nav(page, name: str):
    return page.get_by_role("navigation", name="Hauptnavigation").get_by_role("link", name=name)


def sign_up(page, email: str) -> None:
    page.goto("/")
    page.get_by_role("link", name="Registrieren").click()
    page.get_by_label("Vorname").fill("Lena")
    page.get_by_label("Nachname").fill("Schulz")
    page.get_by_label("Geburtsdatum").fill("1990-04-03")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    shot(page, "patient-signup")
    page.get_by_role("button", name="Konto anlegen").click()
    expect(page.get_by_text("Willkommen bei Patterm.")).to_be_visible()


def test_a_patient_signs_up_books_cancels_and_manages_consents(page, clinics):
    sign_up(page, "lena.schulz@example.com")
    patient = User.objects.get(email="lena.schulz@example.com")
    expect(page.get_by_role("heading", name="Meine Termine")).to_be_visible()
    expect(page.get_by_text("Sie haben keine anstehenden Termine.")).to_be_visible()
    shot(page, "patient-appointments-empty")

    # Search: General practice in Berlin, from the day of the slots on.
    nav(page, "Termin finden").click()
    page.get_by_label("Fachrichtung").select_option("allgemeinmedizin")
    page.get_by_label("Ort").select_option("Berlin")
    page.get_by_label("Von").fill(days_ahead(4, 0).date().isoformat())
    page.get_by_role("button", name="Suchen").click()
    expect(page.get_by_text("1 Ärztin oder Arzt gefunden.")).to_be_visible()
    expect(page.get_by_text("Kardiologie Potsdam")).to_have_count(0)
    shot(page, "patient-search-results")

    page.get_by_role("link", name="09:00").first.click()
    expect(page.get_by_role("heading", name="Termin buchen")).to_be_visible()
    page.get_by_label("Anlass des Besuchs").fill("Husten seit zwei Wochen")
    shot(page, "patient-book")
    page.get_by_role("button", name="Jetzt buchen").click()

    # The confirmation, with the calendar file.
    expect(page.get_by_text("Ihr Termin ist gebucht.")).to_be_visible()
    expect(page.get_by_text("Husten seit zwei Wochen")).to_be_visible()
    expect(page.get_by_text("Hausarztpraxis Mitte, Torstraße 1, Berlin")).to_be_visible()
    shot(page, "patient-appointment-confirmation")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="In den Kalender übernehmen (.ics)").click()
    download = download_info.value
    appointment = Appointment.objects.get(patient=patient)
    assert download.suggested_filename == f"termin-{appointment.pk}.ics"
    content = Path(download.path()).read_bytes()
    (event,) = Calendar.from_ical(content).walk("VEVENT")
    assert event.decoded("dtstart") == clinics["slots"][0].starts_at
    assert "Hausarztpraxis Mitte" in str(event["location"])
    assert b"Husten" not in content

    # My appointments lists it; cancel it there.
    nav(page, "Meine Termine").click()
    card = page.locator(".appointment").first
    expect(card).to_contain_text("Hausarztpraxis Mitte")
    expect(card).to_contain_text("Gebucht")
    shot(page, "patient-appointments")
    card.get_by_role("button", name="Termin absagen").click()
    expect(page.get_by_text("Ihr Termin ist abgesagt.")).to_be_visible()
    expect(page.locator(".appointment").first).to_contain_text("Abgesagt")
    appointment.refresh_from_db()
    assert appointment.status == "cancelled"

    # A record entry from the home clinic, so that a consent has something to share.
    record_entry_write(
        author=clinics["doctor"], patient=patient, clinic=clinics["home"], title="Asthma"
    )
    nav(page, "Meine Akte").click()
    expect(page.get_by_role("heading", name="Diagnose")).to_be_visible()
    expect(page.get_by_text("Geschrieben von Anna Berger, Hausarztpraxis Mitte")).to_be_visible()
    shot(page, "patient-record")

    # Grant a consent to the cardiologist's clinic; a mistake first keeps what was chosen.
    nav(page, "Meine Einwilligungen").click()
    expect(page.get_by_text("Sie haben keine Einwilligung erteilt.")).to_be_visible()
    page.get_by_label("Praxis, die sehen darf").select_option(label="Kardiologie Potsdam (Potsdam)")
    page.get_by_label("Gültig bis").fill("2000-01-01")
    page.get_by_role("button", name="Einwilligung erteilen").click()
    expect(page.get_by_text("Wählen Sie mindestens eine Kategorie.")).to_be_visible()
    expect(page.get_by_text("Das Enddatum liegt in der Vergangenheit.")).to_be_visible()
    expect(page.get_by_label("Praxis, die sehen darf")).to_have_value(str(clinics["cardio"].pk))
    expect(page.get_by_label("Gültig bis")).to_have_value("2000-01-01")
    shot(page, "patient-consents-errors")
    page.get_by_label("Diagnose").check()
    page.get_by_label("Gültig bis").fill("")
    page.get_by_role("button", name="Einwilligung erteilen").click()
    expect(page.get_by_text("Einwilligung erteilt.")).to_be_visible()
    row = page.get_by_role("row", name="Kardiologie Potsdam")
    expect(row).to_contain_text("Aktiv")
    shot(page, "patient-consents")

    # The cardiologist reads with the consent; after the revocation the read is refused.
    _, read = practitioner_record_read(actor=clinics["cardiologist"], patient_id=patient.pk)
    assert [entry.basis for entry in read.entries] == ["consent"]
    row.get_by_role("button", name="Widerrufen").click()
    expect(page.get_by_text("Einwilligung widerrufen.")).to_be_visible()
    expect(page.get_by_role("row", name="Kardiologie Potsdam")).to_contain_text("Widerrufen")
    with pytest.raises(Exception):  # noqa: B017  (NotFound: no basis any more)
        practitioner_record_read(actor=clinics["cardiologist"], patient_id=patient.pk)

    # The access log shows both reads, by role and clinic, never by name.
    nav(page, "Zugriffsprotokoll").click()
    rows = page.locator("table.access-log tbody tr")
    expect(rows.nth(0)).to_contain_text("Verweigert")
    expect(rows.nth(1)).to_contain_text("Einwilligung der Patient:in")
    expect(rows.nth(1)).to_contain_text("Behandler:in, Kardiologie Potsdam")
    expect(page.locator("table.access-log")).not_to_contain_text("Herz")
    shot(page, "patient-access-log")


def test_an_emergency_access_is_named_in_the_access_log(page, clinics, make_patient):
    from vault.services import emergency_access_declare

    patient = make_patient(email="erika@example.com").user
    emergency_access_declare(
        actor=clinics["cardiologist"],
        patient_id=patient.pk,
        justification="Bewusstlos eingeliefert, Vorerkrankungen unbekannt",
    )
    log_in(page, patient.email)
    page.goto("/access-log/")
    first = page.locator("table.access-log tbody tr").first
    expect(first).to_contain_text("Notfall")
    expect(first).to_contain_text("Notfallzugriff erklärt")
    shot(page, "patient-access-log-emergency")


def log_in(page, email: str, next_url: str = "/") -> None:
    page.goto(f"/account/login/?next={next_url}")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()


def test_a_failed_sign_up_keeps_what_was_typed(page, make_patient):
    make_patient(email="schon.da@example.com")
    page.goto("/signup/")
    page.get_by_label("Vorname").fill("Lena")
    page.get_by_label("Nachname").fill("Schulz")
    page.get_by_label("Geburtsdatum").fill("1990-04-03")
    page.get_by_label("E-Mail-Adresse").fill("schon.da@example.com")
    page.get_by_label("Passwort").fill("kurz")
    page.get_by_role("button", name="Konto anlegen").click()

    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_text("Dieses Passwort ist zu kurz.")).to_be_visible()
    expect(page.get_by_label("Vorname")).to_have_value("Lena")
    expect(page.get_by_label("Nachname")).to_have_value("Schulz")
    expect(page.get_by_label("Geburtsdatum")).to_have_value("1990-04-03")
    expect(page.get_by_label("E-Mail-Adresse")).to_have_value("schon.da@example.com")
    expect(page.get_by_label("Passwort")).to_have_value("")
    shot(page, "patient-signup-failed")

    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Konto anlegen").click()
    expect(page.get_by_text("Zu dieser E-Mail-Adresse gibt es bereits ein Konto.")).to_be_visible()
    assert not User.objects.filter(email="schon.da@example.com", is_active=False).exists()


def test_an_anonymous_booker_logs_in_and_a_slot_taken_meanwhile_is_explained(
    page, clinics, make_patient
):
    patient = make_patient(email="erika@example.com").user
    other = make_patient(email="max@example.com").user
    slot = clinics["slots"][0]
    page.goto("/")
    page.get_by_role("link", name="09:00").first.click()
    expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
    expect(page.get_by_role("link", name="Als Patient:in registrieren")).to_be_visible()
    shot(page, "patient-login-with-signup-link")
    page.get_by_label("E-Mail-Adresse").fill(patient.email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", name="Termin buchen")).to_be_visible()

    appointment_book(patient=other, slot_id=slot.public_id)  # someone else is quicker
    page.get_by_role("button", name="Jetzt buchen").click()

    expect(page.get_by_role("alert")).to_contain_text("gerade von jemand anderem gebucht")
    shot(page, "patient-book-taken")
    page.get_by_role("link", name="Zurück zur Suche").first.click()
    expect(page.get_by_text("2 Ärztinnen und Ärzte gefunden.")).to_be_visible()


def test_erasure_needs_the_tick_then_closes_the_account(page, clinics, make_patient):
    patient = make_patient(email="erika@example.com").user
    appointment_book(patient=patient, slot_id=clinics["slots"][1].public_id)
    log_in(page, patient.email)
    page.goto("/record/")
    page.get_by_role("link", name="Mein Konto löschen").click()
    expect(page.get_by_role("heading", name="Was bleibt, und wie lange")).to_be_visible()
    expect(
        page.get_by_text("Ihre Akte hat keine Einträge, die aufbewahrt werden müssen")
    ).to_be_visible()
    shot(page, "patient-erasure")
    page.get_by_role("button", name="Konto schließen und Löschung beantragen").click()
    expect(page.get_by_text("Bitte setzen Sie das Häkchen zur Bestätigung.")).to_be_visible()

    page.get_by_label("Ich habe verstanden").check()
    page.get_by_role("button", name="Konto schließen und Löschung beantragen").click()

    expect(page.get_by_text("Ihr Konto ist geschlossen und Sie sind abgemeldet.")).to_be_visible()
    expect(page.get_by_role("link", name="Anmelden")).to_be_visible()
    patient.refresh_from_db()
    assert not patient.is_active
    assert Appointment.objects.get(patient=patient).status == "cancelled"


def test_the_search_and_my_appointments_fit_a_phone(new_page, clinics, make_patient):
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    expect(page.get_by_text("2 Ärztinnen und Ärzte gefunden.")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    shot(page, "patient-search-phone")

    patient = make_patient(email="erika@example.com").user
    appointment_book(patient=patient, slot_id=clinics["slots"][0].public_id)
    log_in(page, patient.email, next_url="/appointments/")
    expect(page.locator(".appointment")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "patient-appointments-phone")


def test_an_access_log_entry_names_its_leaf_and_its_proof_downloads(page, clinics, make_patient):
    from vault.services import emergency_access_declare

    patient = make_patient(email="erika@example.com").user
    emergency_access_declare(
        actor=clinics["cardiologist"],
        patient_id=patient.pk,
        justification="Bewusstlos eingeliefert, Vorerkrankungen unbekannt",
    )
    checkpoint_create()
    event = AuditEvent.objects.filter(action="emergency.declare").latest("seq")
    log_in(page, patient.email)
    page.goto("/access-log/")
    first = page.locator("table.access-log tbody tr").first
    expect(first).to_contain_text(f"Eintrag {event.leaf_index}")
    link = first.get_by_role("link", name="Nachweis herunterladen")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"patterm-proof-{event.seq}.json"
    proof = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert inclusion_verify(proof, signing.note_verifiers(proof["verifier_keys"])).startswith(
        f"INCLUDED: leaf {event.leaf_index} "
    )
    shot(page, "patient-access-log-proof")
