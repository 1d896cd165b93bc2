"""The second login step, the authenticator set-up and "my sessions" in a real browser, with the
Content Security Policy enforced: no page breaks it."""

import pytest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from accounts.services import ClientInfo, token_issue
from accounts.tests.factories import StaffFactory
from accounts.tests.test_otp import code_at, enrolled
from tests.e2e.conftest import shot

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Lange-Reise-2026"


def collect_csp_violations(page) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def log_in(page, email):
    page.goto("/account/login/")
    page.get_by_label("E-Mail-Adresse").fill(email)
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()


def test_staff_log_in_with_their_code_and_see_this_device_among_their_sessions(page):
    violations = collect_csp_violations(page)
    staff = StaffFactory(email="anna.berger@example.com")
    device, _ = enrolled(staff)
    token_issue(user=staff, client=ClientInfo(user_agent="Praxis-App 2.1"))

    log_in(page, staff.email)
    expect(page.get_by_role("heading", name="Zweiter Schritt: Ihr Code")).to_be_visible()
    page.get_by_label("Code aus Ihrer Authenticator-App").fill(code_at(device, timezone.now()))
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_text(staff.email)).to_be_visible()

    page.get_by_role("link", name="Sitzungen").click()
    expect(page.get_by_role("heading", name="Ihre Sitzungen")).to_be_visible()
    expect(page.get_by_text("dieses Gerät")).to_be_visible()
    expect(page.get_by_text("Praxis-App 2.1")).to_be_visible()
    shot(page, "sessions")

    page.get_by_role("button", name="Alle anderen Sitzungen beenden").click()
    expect(page.get_by_text("Alle Ihre anderen Sitzungen wurden beendet.")).to_be_visible()
    expect(page.get_by_text("Praxis-App 2.1")).to_have_count(0)
    assert violations == []


def test_staff_set_up_an_authenticator_app_from_its_qr_code(page):
    violations = collect_csp_violations(page)
    staff = StaffFactory(email="neu.app@example.com")
    log_in(page, staff.email)

    page.goto("/account/authenticator/")
    page.get_by_role("button", name="Authenticator-App einrichten").click()
    expect(page.get_by_role("img", name="QR-Code für Ihre Authenticator-App")).to_be_visible()
    shot(page, "authenticator-qr")
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    page.get_by_label("Code aus Ihrer Authenticator-App").fill(code_at(device, timezone.now()))
    page.get_by_role("button", name="Bestätigen").click()

    expect(page.get_by_role("heading", name="Ihre Wiederherstellungscodes")).to_be_visible()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    assert violations == []
