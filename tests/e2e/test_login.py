"""Logging in and out, the language switch, and a failed form that keeps what was typed."""

import pytest
from playwright.sync_api import expect

from accounts.tests.factories import StaffFactory
from tests.e2e.conftest import shot

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def test_a_wrong_password_keeps_the_address_and_the_right_one_logs_in(page):
    user = StaffFactory(email="anna.berger@example.com")
    page.goto("/account/login/")

    page.get_by_label("E-Mail-Adresse").fill(user.email)
    page.get_by_label("Passwort").fill("ganz-falsch-1")
    page.get_by_role("button", name="Anmelden").click()

    expect(page.get_by_role("alert")).to_contain_text("E-Mail-Adresse oder Passwort ist falsch.")
    expect(page.get_by_label("E-Mail-Adresse")).to_have_value(user.email)
    shot(page, "login-failed")

    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    expect(page.get_by_text(user.email)).to_be_visible()
    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_role("link", name="Anmelden")).to_be_visible()


def test_the_language_switch_goes_to_english_and_back(page):
    page.goto("/account/login/")
    expect(page.locator("html")).to_have_attribute("lang", "de")

    page.get_by_label("Sprache").select_option("en")
    page.get_by_role("button", name="Sprache wechseln").click()

    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shot(page, "login-english")

    page.get_by_label("Language").select_option("de")
    page.get_by_role("button", name="Switch language").click()

    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
