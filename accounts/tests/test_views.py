"""The portal's login and logout pages, and what every page shares (patterm/web.py)."""

import pytest
from django.urls import reverse

from accounts.tests.factories import StaffFactory
from audit.models import AuditAction, AuditEvent, Outcome

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
PASSWORD = "Lange-Reise-2026"


def test_the_login_page_is_german_by_default_and_english_on_request(client):
    german = client.get(LOGIN)
    english = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en")

    assert german.status_code == 200
    assert "Anmelden" in german.text
    assert '<html lang="de">' in german.text
    assert "Log in" in english.text
    assert '<html lang="en">' in english.text


def test_a_login_starts_a_session_with_a_new_key_and_is_audited(client, make_patient):
    patient = make_patient().user
    client.get(LOGIN)
    anonymous_key = client.session.session_key

    response = client.post(LOGIN, {"email": patient.email.upper(), "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("start")
    assert int(client.session["_auth_user_id"]) == patient.pk
    assert client.session.session_key != anonymous_key
    event = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN).latest("seq")
    assert (event.actor_id, event.object_type) == (patient.pk, "session")


def test_a_wrong_password_keeps_the_address_says_why_and_is_audited(client, make_patient):
    patient = make_patient().user

    response = client.post(LOGIN, {"email": patient.email, "password": "falsch-falsch"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert "E-Mail-Adresse oder Passwort ist falsch." in response.text
    assert f'value="{patient.email}"' in response.text
    assert "falsch-falsch" not in response.text
    event = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED).latest("seq")
    assert event.outcome == Outcome.FAILURE


def test_an_unknown_account_gets_the_same_message(client):
    response = client.post(LOGIN, {"email": "niemand@example.com", "password": "falsch-falsch"})

    assert "E-Mail-Adresse oder Passwort ist falsch." in response.text


def test_an_empty_form_shows_errors_next_to_the_fields(client):
    response = client.post(LOGIN, {"email": "kein-at", "password": ""})

    assert response.status_code == 200
    assert 'id="id_email_error"' in response.text
    assert 'id="id_password_error"' in response.text
    assert 'value="kein-at"' in response.text


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [("/account/login/?x=1", "/account/login/?x=1"), ("https://evil.example/", "/start/")],
)
def test_login_follows_only_a_local_next(client, make_patient, next_url, expected):
    patient = make_patient().user

    response = client.post(LOGIN, {"email": patient.email, "password": PASSWORD, "next": next_url})

    assert response.url == expected


def test_logout_needs_a_post_ends_the_session_and_is_audited(client, make_patient):
    patient = make_patient().user
    client.force_login(patient)

    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGOUT).latest("seq")
    assert (event.actor_id, event.object_type) == (patient.pk, "session")


def test_a_signed_in_user_is_sent_on_from_the_login_page(client):
    client.force_login(StaffFactory())

    assert client.get(LOGIN).status_code == 302


def test_an_unknown_page_is_the_html_error_page_without_request_data(client):
    response = client.get("/gibt-es-nicht/?geheim=1")

    assert response.status_code == 404
    main = response.text.split('<main id="content"', 1)[1]
    assert "Seite nicht gefunden" in main
    assert "geheim" not in main
    assert "Traceback" not in response.text


def test_forms_need_the_csrf_token(make_patient):
    from django.test import Client

    patient = make_patient().user
    strict = Client(enforce_csrf_checks=True)

    response = strict.post(LOGIN, {"email": patient.email, "password": PASSWORD})

    assert response.status_code == 403
