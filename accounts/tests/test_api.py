"""Sign-up, login, logout and /api/me through the HTTP layer, as a client uses them."""

import json

import pytest

from accounts.models import ApiToken, User
from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import subject_pseudonym

REGISTER_URL = "/api/auth/register/patient"
LOGIN_URL = "/api/auth/login"

VALID_SIGN_UP = {
    "email": "p.demo@example.com",
    "password": "Sicher!123",
    "first_name": "Pat",
    "last_name": "Demo",
    "date_of_birth": "1990-01-01",
}

pytestmark = pytest.mark.django_db


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_sign_up_returns_token_and_patient_and_audits_it(api_client):
    response = post_json(api_client, REGISTER_URL, VALID_SIGN_UP)

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("ptk_")
    assert body["expires_at"]
    assert body["user"] == {
        "id": body["user"]["id"],
        "email": "p.demo@example.com",
        "role": "patient",
        "first_name": "Pat",
        "last_name": "Demo",
        "language": "de",
        "memberships": [],
    }
    event = AuditEvent.objects.get(action=AuditAction.AUTH_REGISTER)
    assert event.actor_id == body["user"]["id"]
    assert event.outcome == Outcome.SUCCESS
    assert event.subject_ref == subject_pseudonym(body["user"]["id"])


@pytest.mark.parametrize(
    ("extra", "headers", "language"),
    [
        ({}, {}, "de"),
        ({}, {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}, "en"),
        ({}, {"HTTP_ACCEPT_LANGUAGE": "fr"}, "de"),
        ({"language": "en"}, {"HTTP_ACCEPT_LANGUAGE": "de"}, "en"),
    ],
)
def test_the_e_mail_language_is_chosen_at_sign_up(api_client, extra, headers, language):
    response = post_json(api_client, REGISTER_URL, {**VALID_SIGN_UP, **extra}, **headers)

    assert response.status_code == 201
    assert response.json()["user"]["language"] == language
    assert User.objects.get(pk=response.json()["user"]["id"]).language == language


def test_a_user_changes_the_language_of_their_e_mails(api_client):
    token = post_json(api_client, REGISTER_URL, VALID_SIGN_UP).json()["token"]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    changed = api_client.patch(
        "/api/me", data=json.dumps({"language": "en"}), content_type="application/json", **headers
    )
    refused = api_client.patch(
        "/api/me", data=json.dumps({"language": "fr"}), content_type="application/json", **headers
    )

    assert changed.status_code == 200
    assert changed.json()["language"] == "en"
    assert User.objects.get(email="p.demo@example.com").language == "en"
    assert refused.status_code == 422
    assert api_client.get("/api/me", **headers).json()["language"] == "en"


def test_an_unknown_sign_up_language_is_422(api_client):
    response = post_json(api_client, REGISTER_URL, {**VALID_SIGN_UP, "language": "fr"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "language"


def test_the_sign_up_token_works_for_me(api_client):
    token = post_json(api_client, REGISTER_URL, VALID_SIGN_UP).json()["token"]

    response = api_client.get("/api/me", **bearer(token))

    assert response.status_code == 200
    assert response.json()["email"] == "p.demo@example.com"
    assert response.json()["first_name"] == "Pat"


def test_sign_up_accepts_form_encoded_bodies(api_client):
    response = api_client.post(REGISTER_URL, data=VALID_SIGN_UP)

    assert response.status_code == 201


def test_duplicate_email_in_other_case_is_refused_and_nothing_stored(api_client):
    post_json(api_client, REGISTER_URL, VALID_SIGN_UP)
    events_before = AuditEvent.objects.count()

    response = post_json(api_client, REGISTER_URL, {**VALID_SIGN_UP, "email": "P.Demo@Example.COM"})

    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert User.objects.count() == 1
    assert AuditEvent.objects.count() == events_before


def test_login_issues_a_new_token_and_audits_it(api_client, make_patient):
    patient = make_patient(email="erika@example.com").user

    response = post_json(
        api_client, LOGIN_URL, {"email": "Erika@Example.com", "password": "Lange-Reise-2026"}
    )

    assert response.status_code == 200
    assert response.json()["user"]["id"] == patient.pk
    assert api_client.get("/api/me", **bearer(response.json()["token"])).status_code == 200
    event = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN).get()
    assert event.actor_id == patient.pk
    assert event.client_address == "127.0.0.1"
    assert event.request_id


@pytest.mark.parametrize(
    "email, password",
    [("erika@example.com", "wrong-password-1"), ("nobody@example.com", "Lange-Reise-2026")],
    ids=["wrong password", "unknown account"],
)
def test_failed_login_is_401_with_the_same_message_and_audited(
    api_client, make_patient, email, password
):
    make_patient(email="erika@example.com")

    response = post_json(api_client, LOGIN_URL, {"email": email, "password": password})

    assert response.status_code == 401
    assert response.json() == {
        "detail": "E-Mail-Adresse oder Passwort ist falsch.",  # German unless asked otherwise
        "code": "invalid_credentials",
    }
    event = AuditEvent.objects.get(action=AuditAction.AUTH_LOGIN_FAILED)
    assert event.outcome == Outcome.FAILURE
    assert "example.com" not in json.dumps(event.details)


def test_logout_revokes_the_token_at_once_and_audits_it(api_client, make_patient):
    issued = make_patient()

    response = api_client.post("/api/auth/logout", **bearer(issued.raw))

    assert response.status_code == 204
    assert api_client.get("/api/me", **bearer(issued.raw)).status_code == 401
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert AuditEvent.objects.filter(
        action=AuditAction.AUTH_LOGOUT, object_id=str(issued.token.pk)
    ).exists()


def test_logout_leaves_other_tokens_of_the_user_alive(api_client, make_patient):
    first = make_patient(email="erika@example.com")
    second = post_json(
        api_client, LOGIN_URL, {"email": "erika@example.com", "password": "Lange-Reise-2026"}
    ).json()["token"]

    api_client.post("/api/auth/logout", **bearer(first.raw))

    assert api_client.get("/api/me", **bearer(second)).status_code == 200


def test_me_without_a_token_is_401_in_the_error_shape(api_client):
    response = api_client.get("/api/me")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_me_shows_staff_memberships(api_client):
    from accounts.services import ClientInfo, token_issue
    from accounts.tests.factories import ClinicFactory, StaffFactory

    clinic = ClinicFactory(name="Praxis Mitte", slug="praxis-mitte", city="Berlin")
    staff = StaffFactory(clinic=clinic, first_name="Anna", last_name="Berger")
    token = token_issue(user=staff, client=ClientInfo()).raw

    body = api_client.get("/api/me", **bearer(token)).json()

    assert body["role"] == "practitioner"
    assert body["first_name"] == "Anna"
    assert body["memberships"] == [
        {
            "clinic": {
                "id": clinic.pk,
                "name": "Praxis Mitte",
                "slug": "praxis-mitte",
                "city": "Berlin",
            },
            "role": "practitioner",
        }
    ]


def test_messages_follow_the_accept_language_header(api_client):
    body = {"email": "nobody@example.com", "password": "irgendwas-123"}

    english = post_json(api_client, LOGIN_URL, body, HTTP_ACCEPT_LANGUAGE="en")
    german = post_json(api_client, LOGIN_URL, body, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")

    assert english.json()["detail"] == "E-mail address or password is wrong."
    assert german.json()["detail"] == "E-Mail-Adresse oder Passwort ist falsch."
    assert english.json()["code"] == german.json()["code"] == "invalid_credentials"
