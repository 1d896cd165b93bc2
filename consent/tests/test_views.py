"""The patient's consents and access log pages: who may open them, granting with the typed
values kept on errors, revoking, and the access log with emergencies named in words."""

import datetime

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from booking.tests.factories import practitioner_create
from booking.tests.portal import ROLES, expected, portal_world
from consent.models import Consent
from consent.services import consent_grant
from vault.services import emergency_access_declare, practitioner_record_read

pytestmark = pytest.mark.django_db

CONSENTS = reverse("consent:consents")
ACCESS_LOG = reverse("consent:access_log")


@pytest.fixture
def world(make_patient):
    return portal_world(make_patient)


PAGES = {
    "consents": (CONSENTS, {"anonymous": 302, "patient": 200, "staff": 403}),
    "access_log": (ACCESS_LOG, {"anonymous": 302, "patient": 200, "staff": 403}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_answers_each_role_as_expected(world, page, role):
    url, table = PAGES[page]

    response = world.client_for(role).get(url)

    assert response.status_code == expected(table, role), (page, role)


@pytest.mark.parametrize(
    ("role", "status"), [("other_patient", 404), ("practitioner", 403), ("anonymous", 302)]
)
def test_nobody_else_revokes_the_patients_consent(world, role, status):
    url = reverse("consent:revoke", kwargs={"consent_id": world.consent.pk})

    response = world.client_for(role).post(url)

    assert response.status_code == status
    world.consent.refresh_from_db()
    assert world.consent.revoked_at is None


def test_the_list_shows_only_my_consents_with_their_status(world):
    with_end = consent_grant(
        patient=world.patient,
        grantee_clinic_id=world.clinic.pk,
        source_clinic_id=world.other_clinic.pk,
        categories=["allergy", "medication"],
        valid_until=timezone.localdate() + datetime.timedelta(days=1),
    )
    client = world.client_for("patient")

    response = client.get(CONSENTS)
    with time_machine.travel(timezone.now() + datetime.timedelta(days=3)):
        later = world.client_for("patient").get(CONSENTS)  # fresh: sessions end when idle

    assert list(response.context["page_obj"].object_list) == [with_end, world.consent]
    assert "Allergie, Medikation" in response.text
    assert response.text.count("badge--ok") == 2
    assert "Abgelaufen" in later.text
    assert str(world.other_consent.pk) not in response.text


def test_granting_a_consent_redirects_with_a_message_and_is_audited(world):
    client = world.client_for("patient")

    response = client.post(
        CONSENTS,
        {
            "grantee_clinic": world.clinic.pk,
            "source_clinic": "",
            "categories": ["diagnosis", "lab_result"],
            "valid_until": "",
        },
        follow=True,
    )

    consent = Consent.objects.filter(patient=world.patient).latest("granted_at")
    assert consent.grantee_clinic == world.clinic
    assert consent.categories == ["diagnosis", "lab_result"]
    assert consent.source_clinic is None and consent.valid_until is None
    assert "Einwilligung erteilt" in response.text
    event = AuditEvent.objects.filter(action=AuditAction.CONSENT_GRANT).latest("seq")
    assert event.object_id == str(consent.pk)


def test_the_services_validation_errors_keep_the_typed_values(world):
    client = world.client_for("patient")
    yesterday = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()
    count = Consent.objects.count()

    response = client.post(
        CONSENTS,
        {
            "grantee_clinic": world.clinic.pk,
            "source_clinic": world.other_clinic.pk,
            "categories": [],
            "valid_until": yesterday,
        },
    )

    assert response.status_code == 422
    assert Consent.objects.count() == count
    assert 'id="id_categories_error"' in response.text
    assert "Wählen Sie mindestens eine Kategorie." in response.text
    assert 'id="id_valid_until_error"' in response.text
    assert "Enddatum liegt in der Vergangenheit" in response.text
    assert f'value="{yesterday}"' in response.text
    assert f'<option value="{world.clinic.pk}" selected>' in response.text
    assert f'<option value="{world.other_clinic.pk}" selected>' in response.text


def test_an_unknown_clinic_is_an_error_at_its_field(world):
    response = world.client_for("patient").post(
        CONSENTS, {"grantee_clinic": 999999, "categories": ["diagnosis"]}
    )

    assert response.status_code == 422
    assert 'id="id_grantee_clinic_error"' in response.text
    assert 'value="diagnosis" id="id_categories_0" checked' in response.text


def test_revoking_ends_the_consent_and_removes_the_button(world):
    client = world.client_for("patient")
    url = reverse("consent:revoke", kwargs={"consent_id": world.consent.pk})

    response = client.post(url, follow=True)
    again = client.post(url, follow=True)

    world.consent.refresh_from_db()
    assert world.consent.revoked_at is not None
    assert "Einwilligung widerrufen" in response.text
    assert "Widerrufen" in response.text
    assert url not in response.text
    assert "bereits widerrufen" in again.text


def test_the_consents_queries_do_not_grow(world, django_assert_max_num_queries):
    client = world.client_for("patient")
    with django_assert_max_num_queries(12) as few:
        client.get(CONSENTS)
    for _ in range(25):
        consent_grant(
            patient=world.patient,
            grantee_clinic_id=world.clinic.pk,
            source_clinic_id=world.other_clinic.pk,
            categories=["note"],
            valid_until=None,
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(CONSENTS)

    assert len(response.context["page_obj"].object_list) == 20


def test_the_access_log_names_roles_and_clinics_and_flags_emergencies_in_words(world):
    practitioner_record_read(actor=world.doctor, patient_id=world.patient.pk)
    rescuer = practitioner_create(clinic=world.other_clinic, first_name="Rolf", last_name="Notarzt")
    emergency_access_declare(
        actor=rescuer,
        patient_id=world.patient.pk,
        justification="Unfall, bewusstlos eingeliefert, Medikation unbekannt",
    )

    response = world.client_for("patient").get(ACCESS_LOG)

    text = response.text
    rows = response.context["rows"]
    assert rows[0]["action"] == "emergency.declare" and rows[0]["emergency"]
    assert "Notfall" in text
    assert "Notfallzugriff erklärt" in text
    assert "Behandler:in" in text
    assert "Von der eigenen Praxis geschrieben" in text
    assert world.clinic.name in text and world.other_clinic.name in text
    assert "Anna" not in text and "Berger" not in text
    assert "Rolf" not in text and "Notarzt" not in text
    assert "Unfall" not in text


def test_the_access_log_is_empty_at_first_and_its_queries_do_not_grow(
    make_patient, django_assert_max_num_queries
):
    world = portal_world(make_patient)
    client = world.client_for("other_patient")
    empty = client.get(ACCESS_LOG)
    assert "Bisher hat niemand sonst auf Ihre Daten zugegriffen." in empty.text

    client = world.client_for("patient")
    with django_assert_max_num_queries(12) as few:
        client.get(ACCESS_LOG)
    for _ in range(40):
        practitioner_record_read(actor=world.doctor, patient_id=world.patient.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(ACCESS_LOG)

    assert len(response.context["rows"]) == 30
    assert 'rel="next"' in response.text
