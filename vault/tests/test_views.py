"""The sign-up page and "my record": who may open them, sign-up errors that keep what was
typed, the session it starts, and the record read audited like the API's."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import AuditAction, AuditEvent, Outcome
from booking.tests.portal import ROLES, expected, portal_world
from vault.models import PatientProfile
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

SIGNUP = reverse("vault:signup")
RECORD = reverse("vault:record")
FORM = {
    "first_name": "Lena",
    "last_name": "Schulz",
    "date_of_birth": "1990-04-03",
    "email": "lena.schulz@example.com",
    "password": "Lange-Reise-2026",
}


@pytest.fixture
def world(make_patient):
    return portal_world(make_patient)


PAGES = {
    "signup": (SIGNUP, {"anonymous": 200, "patient": 302, "staff": 302}),
    "record": (RECORD, {"anonymous": 302, "patient": 200, "staff": 403}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_answers_each_role_as_expected(world, page, role):
    url, table = PAGES[page]

    response = world.client_for(role).get(url)

    assert response.status_code == expected(table, role), (page, role)


def test_sign_up_creates_the_patient_and_logs_them_in_audited(db):
    client = Client()
    client.get(SIGNUP)
    anonymous_key = client.session.session_key

    response = client.post(SIGNUP, FORM, follow=True)

    user = User.objects.get(email="lena.schulz@example.com")
    assert user.role == "patient"
    assert PatientProfile.objects.get(patient=user).last_name == "Schulz"
    assert int(client.session["_auth_user_id"]) == user.pk
    assert client.session.session_key != anonymous_key
    assert response.redirect_chain[0][0] == reverse("start")
    assert "Willkommen bei Patterm" in response.text
    actions = list(
        AuditEvent.objects.filter(actor_id=user.pk).order_by("seq").values_list("action", flat=True)
    )
    assert actions[:2] == [AuditAction.AUTH_REGISTER, AuditAction.AUTH_LOGIN]
    assert not user.api_tokens.exists()  # a browser session, no API token


def test_sign_up_follows_a_local_next_only(db):
    client = Client()

    response = client.post(SIGNUP, {**FORM, "next": "https://evil.example/"})
    other = Client().post(SIGNUP, {**FORM, "email": "b@example.com", "next": "/book/slot-001/"})

    assert response.url == reverse("start")
    assert other.url == "/book/slot-001/"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"password": "kurz"}, "password", "zu kurz"),
        ({"email": "kein-at"}, "email", "gültige E-Mail-Adresse"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth", "Zukunft"),
        ({"first_name": ""}, "first_name", "zwingend erforderlich"),
    ],
)
def test_a_failed_sign_up_keeps_what_was_typed(db, change, field, message):
    response = Client().post(SIGNUP, {**FORM, **change})

    assert response.status_code == 200
    assert f'id="id_{field}_error"' in response.text
    assert message in response.text
    for name, value in {**FORM, **change}.items():
        if name != "password" and value:
            assert f'value="{value}"' in response.text
    assert FORM["password"] not in response.text
    assert not User.objects.filter(email=FORM["email"]).exists() or field == "email"


def test_an_address_taken_already_is_an_error_at_the_email_field(world):
    response = Client().post(SIGNUP, {**FORM, "email": world.patient.email.upper()})

    assert 'id="id_email_error"' in response.text
    assert "gibt es bereits ein Konto" in response.text
    assert 'value="Lena"' in response.text


def test_my_record_shows_entries_by_category_with_author_and_clinic_audited(world):
    record_entry_write(
        author=world.doctor,
        patient=world.patient,
        clinic=world.clinic,
        category="allergy",
        title="Penicillin-Allergie",
        body="Hautausschlag nach Amoxicillin.",
    )
    client = world.client_for("patient")

    response = client.get(RECORD)

    text = response.text
    assert "Erika Mustermann" in text
    assert "Penicillin-Allergie" in text and "Hypertonie" in text
    assert text.index("Diagnose") < text.index("Hypertonie") < text.index("Allergie")
    assert "Anna Berger" in text and world.clinic.name in text
    event = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).latest("seq")
    assert (event.actor_id, event.outcome) == (world.patient.pk, Outcome.SUCCESS)
    assert event.details["bases"] == ["self"]


def test_my_record_without_entries_says_so(world):
    response = world.client_for("other_patient").get(RECORD)

    assert "noch keine Einträge" in response.text
    assert "Hypertonie" not in response.text


def test_my_record_queries_do_not_grow_with_the_entries(world, django_assert_max_num_queries):
    client = world.client_for("patient")
    with django_assert_max_num_queries(20) as few:
        client.get(RECORD)
    for number in range(15):
        record_entry_write(
            author=world.doctor, patient=world.patient, clinic=world.clinic, title=f"T{number}"
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(RECORD)

    assert "T14" in response.text


def test_my_record_page_costs_six_statements(world, django_assert_num_queries):
    """Session, user and its browser session (the middleware), the profile, the entries with
    their data key, and the audit row, which commits by itself (decision 0023: no count, no
    transaction of the read's own)."""
    client = world.client_for("patient")
    client.get(RECORD)  # the session's first request records its device once

    with django_assert_num_queries(6) as queries:
        response = client.get(RECORD)

    assert response.status_code == 200 and "Hypertonie" in response.text
    assert queries.captured_queries[-1]["sql"].startswith("INSERT INTO audit_auditevent")
