"""The account security pages: the code step of the browser login, the authenticator set-up with
its QR code, "my sessions", and password change and reset by e-mail."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BrowserSession, Role
from accounts.services import ClientInfo, token_issue
from accounts.tests.factories import StaffFactory
from accounts.tests.test_otp import code_at, enrolled
from audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"
NEW_PASSWORD = "Neue-Brücke-über-den-Fluss"
LOGIN = reverse("accounts:login")
LOGIN_CODE = reverse("accounts:login_code")
SESSIONS = reverse("accounts:sessions")
OTP_SETUP = reverse("accounts:otp_setup")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The reset limit counts in the cache, which outlives a test's database."""
    cache.clear()


def signed_in_user(browser):
    return browser.get(reverse("home")).wsgi_request.user


def page_login(browser, email, password=PASSWORD):
    return browser.post(LOGIN, {"email": email, "password": password})


# --- the code step ------------------------------------------------------------------------------


def test_staff_with_an_app_give_a_code_after_the_password(settings):
    settings.PATTERM_REQUIRE_STAFF_OTP = True
    staff = StaffFactory(role=Role.AUDITOR, email="pruefung@example.com")
    device, _ = enrolled(staff)
    browser = Client()

    first = page_login(browser, staff.email)

    assert first.status_code == 302 and first.url.startswith(LOGIN_CODE)
    assert not signed_in_user(browser).is_authenticated
    second = browser.post(LOGIN_CODE, {"code": code_at(device, timezone.now())})
    assert second.status_code == 302
    assert signed_in_user(browser) == staff
    assert browser.get("/staff/audit/events/").status_code == 200  # verified: the gate is open
    event = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN).latest("seq")
    assert (event.object_type, event.details) == ("session", {"second_factor": "totp"})


def test_a_wrong_code_shows_the_error_next_to_the_field_and_signs_nobody_in():
    staff = StaffFactory(email="falscher.code@example.com")
    device, _ = enrolled(staff)
    browser = Client()
    page_login(browser, staff.email)
    wrong = f"{(int(code_at(device, timezone.now())) + 3) % 1_000_000:06d}"

    response = browser.post(LOGIN_CODE, {"code": wrong})

    assert response.status_code == 200
    assert 'id="id_code_error"' in response.text
    assert not signed_in_user(browser).is_authenticated


def test_the_code_step_expires_after_five_minutes():
    staff = StaffFactory(email="langsam@example.com")
    device, _ = enrolled(staff)
    browser = Client()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        page_login(browser, staff.email)
    later = start + timedelta(minutes=6)
    with time_machine.travel(later, tick=False):
        response = browser.post(LOGIN_CODE, {"code": code_at(device, later)})

    assert response.status_code == 302 and response.url == LOGIN
    assert not signed_in_user(browser).is_authenticated


def test_the_code_step_without_a_password_first_goes_back_to_the_login():
    response = Client().get(LOGIN_CODE)

    assert response.status_code == 302 and response.url == LOGIN


def test_the_html_login_is_locked_like_the_api_and_says_so(make_patient):
    patient = make_patient(email="gesperrt@example.com").user
    browser = Client()
    for _ in range(10):
        page_login(browser, patient.email, "falsch-falsch-1")

    response = page_login(browser, patient.email)

    assert response.status_code == 429
    assert "Zu viele fehlgeschlagene Anmeldeversuche" in response.text
    assert not signed_in_user(browser).is_authenticated


def test_staff_without_an_app_are_sent_on_but_protected_pages_refuse_them(settings):
    settings.PATTERM_REQUIRE_STAFF_OTP = True
    staff = StaffFactory(role=Role.PRACTITIONER, email="ohne.app@example.com")
    browser = Client()

    assert page_login(browser, staff.email).status_code == 302
    response = browser.get("/staff/schedule/")

    assert response.status_code == 403
    assert "otp_required" in response.text


# --- setting up the app -----------------------------------------------------------------------


def test_the_setup_page_shows_a_qr_code_and_gives_recovery_codes_once():
    staff = StaffFactory(email="neu.app@example.com")
    browser = Client()
    browser.force_login(staff)

    assert "Authenticator-App einrichten" in browser.get(OTP_SETUP).text
    browser.post(OTP_SETUP, {"action": "start"})
    page = browser.get(OTP_SETUP).text
    assert "<svg" in page and "<script" not in page
    device = TOTPDevice.objects.get(user=staff, confirmed=False)

    done = browser.post(OTP_SETUP, {"action": "confirm", "code": code_at(device, timezone.now())})

    assert done.status_code == 200
    codes = re.findall(r"<code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code>", done.text)
    assert len(codes) == 10
    assert TOTPDevice.objects.get(pk=device.pk).confirmed
    assert not any(code in browser.get(OTP_SETUP).text for code in codes)


def test_patients_see_that_they_need_no_app(make_patient):
    browser = Client()
    browser.force_login(make_patient().user)

    page = browser.get(OTP_SETUP)

    assert page.status_code == 200
    assert "<svg" not in page.text


# --- my sessions --------------------------------------------------------------------------------


def test_my_sessions_marks_this_device_and_ends_another(make_patient):
    issued = make_patient(email="sitzungen@example.com")
    browser = Client(HTTP_USER_AGENT="Firefox auf Linux")
    page_login(browser, "sitzungen@example.com")

    page = browser.get(SESSIONS).text
    assert "Firefox auf Linux" in page and "dieses Gerät" in page
    assert f"token-{issued.token.pk}" in page

    response = browser.post(reverse("accounts:session_end", args=[f"token-{issued.token.pk}"]))

    assert response.status_code == 302 and response.url == SESSIONS
    assert browser.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.raw}").status_code == 401
    assert signed_in_user(browser).is_authenticated


def test_ending_all_other_sessions_keeps_this_browser(make_patient):
    issued = make_patient(email="andere@example.com")
    elsewhere = Client()
    page_login(elsewhere, "andere@example.com")
    browser = Client()
    page_login(browser, "andere@example.com")

    browser.post(reverse("accounts:sessions_end_others"))

    assert signed_in_user(browser).is_authenticated
    assert not signed_in_user(elsewhere).is_authenticated
    assert browser.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.raw}").status_code == 401


def test_ending_this_browser_from_the_list_signs_it_out(make_patient):
    make_patient(email="selbst@example.com")
    browser = Client()
    page_login(browser, "selbst@example.com")
    entry = BrowserSession.objects.get(user__email="selbst@example.com")

    response = browser.post(reverse("accounts:session_end", args=[f"browser-{entry.pk}"]))

    assert response.status_code == 302
    assert not signed_in_user(browser).is_authenticated


def test_someone_elses_session_cannot_be_ended_from_the_page(make_patient):
    theirs = make_patient()
    make_patient(email="fremd@example.com")
    browser = Client()
    page_login(browser, "fremd@example.com")

    response = browser.post(reverse("accounts:session_end", args=[f"token-{theirs.token.pk}"]))

    assert response.status_code == 404
    assert browser.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {theirs.raw}").status_code == 200


# --- passwords --------------------------------------------------------------------------------


def test_changing_the_password_keeps_this_browser_and_ends_the_others(make_patient):
    issued = make_patient(email="neues.passwort@example.com")
    elsewhere = Client()
    page_login(elsewhere, "neues.passwort@example.com")
    browser = Client()
    page_login(browser, "neues.passwort@example.com")

    response = browser.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert signed_in_user(browser).is_authenticated
    assert browser.get(SESSIONS).status_code == 200
    assert not signed_in_user(elsewhere).is_authenticated
    assert browser.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.raw}").status_code == 401


def test_a_breached_new_password_is_refused_next_to_its_field(make_patient):
    make_patient(email="schwach@example.com")
    browser = Client()
    page_login(browser, "schwach@example.com")

    response = browser.post(
        reverse("accounts:password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "Sunshine2026!",
            "new_password2": "Sunshine2026!",
        },
    )

    assert response.status_code == 200
    assert 'id="id_new_password2_error"' in response.text or 'id="id_new_password1_error"' in (
        response.text
    )


def test_a_password_reset_link_sets_a_new_password_once_and_ends_every_session(
    settings, make_patient
):
    settings.PATTERM_PUBLIC_URL = "https://portal.example.de"
    issued = make_patient(email="vergessen@example.com")
    browser = Client()

    sent = browser.post(reverse("accounts:password_reset"), {"email": "Vergessen@example.com"})

    assert sent.status_code == 302
    (message,) = mail.outbox
    assert message.to == ["vergessen@example.com"]
    link = re.search(r"https://portal\.example\.de(/\S+)", message.body).group(1)
    assert "Erika" not in message.body and "Mustermann" not in message.body
    form = browser.get(link, follow=True)
    assert form.status_code == 200
    set_url = form.redirect_chain[-1][0]
    done = browser.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert browser.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.raw}").status_code == 401
    assert page_login(Client(), "vergessen@example.com", NEW_PASSWORD).status_code == 302
    again = Client().get(link, follow=True)
    assert "ungültig oder abgelaufen" in again.text


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing():
    known_page = Client().post(reverse("accounts:password_reset"), {"email": "niemand@example.com"})

    assert known_page.status_code == 302
    assert known_page.url == reverse("accounts:password_reset_done")
    assert mail.outbox == []


def test_reset_e_mails_are_limited_to_three_an_hour_per_address(make_patient):
    make_patient(email="postfach@example.com")
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        for _ in range(5):
            response = Client().post(
                reverse("accounts:password_reset"), {"email": "postfach@example.com"}
            )
            assert response.url == reverse("accounts:password_reset_done")
    assert len(mail.outbox) == 3
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        Client().post(reverse("accounts:password_reset"), {"email": "postfach@example.com"})
    assert len(mail.outbox) == 4


def test_pages_carry_a_strict_content_security_policy():
    response = Client().get(LOGIN)

    policy = response["Content-Security-Policy"]
    script = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert "frame-ancestors 'none'" in policy


def test_staff_token_from_the_api_is_listed_on_the_page():
    staff = StaffFactory(email="liste@example.com")
    issued = token_issue(user=staff, client=ClientInfo(user_agent="Praxis-App 2.1"))
    browser = Client()
    browser.force_login(staff)

    page = browser.get(SESSIONS).text

    assert "Praxis-App 2.1" in page and issued.raw not in page
