"""The API's shared contract: docs, health, pagination, and no secret in any of them."""

import datetime
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken, Clinic, Membership, User
from accounts.services import ClientInfo
from accounts.tests.factories import ClinicFactory
from audit.models import AuditEvent
from audit.signals import audit_event
from patterm.demo import ACCOUNTS, PRACTITIONERS, SUPERUSER
from vault.models import PatientKey, PatientProfile
from vault.services import patient_register

pytestmark = pytest.mark.django_db


def test_openapi_schema_and_swagger_ui_are_served(api_client):
    schema = api_client.get("/api/openapi.json")
    docs = api_client.get("/api/docs")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ["/api/auth/register/patient", "/api/auth/login", "/api/me", "/api/clinics"]:
        assert path in paths
    assert docs.status_code == 200


def test_the_document_the_linter_checks_is_the_one_served(api_client):
    """`make openapi-lint` (CI) lints the command's dump; it must be what clients get."""
    dumped = StringIO()
    call_command("export_openapi_schema", api="patterm.api.api", stdout=dumped)

    served = api_client.get("/api/openapi.json").json()

    assert json.loads(dumped.getvalue()) == served
    assert served["servers"] == [{"url": "/", "description": "This Patterm server"}]


def test_health_reports_database_and_keys_without_secrets(api_client, settings):
    response = api_client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "master_keys": 1,
        "active_master_key_version": 1,
    }
    master_key = settings.PATTERM_MASTER_KEYS.split(":", 1)[1]
    assert master_key not in response.content.decode()


def test_health_is_503_when_the_keys_are_broken(api_client, settings):
    settings.PATTERM_MASTER_KEYS = "1:not-base64!"

    response = api_client.get("/api/health")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_clinics_are_paginated_with_count(api_client):
    for number in range(5):
        ClinicFactory(name=f"Praxis {number}", slug=f"praxis-{number}")

    page = api_client.get("/api/clinics?limit=2&offset=2").json()

    assert page["count"] == 5
    assert [clinic["name"] for clinic in page["items"]] == ["Praxis 2", "Praxis 3"]
    assert set(page["items"][0]) >= {"id", "name", "slug", "city", "address", "specialties"}


def test_clinics_list_with_specialties_costs_four_queries_at_any_size(api_client):
    from accounts.tests.factories import StaffFactory
    from booking.models import PractitionerSpecialty, Specialty

    specialties = [
        Specialty.objects.create(slug=slug, name_de=slug, name_en=slug)
        for slug in ("kardiologie", "dermatologie")
    ]
    for number in range(30):
        clinic = ClinicFactory(name=f"Praxis {number:02}", slug=f"praxis-{number}")
        membership = StaffFactory(clinic=clinic).memberships.get()
        for specialty in specialties:
            PractitionerSpecialty.objects.create(membership=membership, specialty=specialty)

    # count, page, the practitioners' memberships, their specialties
    with CaptureQueriesContext(connection) as queries:
        page = api_client.get("/api/clinics?limit=30").json()

    assert len(queries) == 4
    assert len(page["items"]) == 30
    assert [s["slug"] for s in page["items"][0]["specialties"]] == ["dermatologie", "kardiologie"]


def test_seed_demo_is_idempotent():
    call_command("seed_demo", verbosity=0)
    counts = [m.objects.count() for m in (Clinic, User, Membership, AuditEvent)]
    passwords = dict(User.objects.values_list("email", "password"))

    call_command("seed_demo", verbosity=0)

    assert [m.objects.count() for m in (Clinic, User, Membership, AuditEvent)] == counts
    assert dict(User.objects.values_list("email", "password")) == passwords
    assert Clinic.objects.values("city").distinct().count() >= 3
    assert set(User.objects.values_list("role", flat=True)) == {
        "patient",
        "practitioner",
        "clinic_admin",
        "auditor",
    }


def test_every_demo_account_in_the_readme_can_log_in(api_client):
    call_command("seed_demo", verbosity=0)

    for account in [*ACCOUNTS, *PRACTITIONERS, SUPERUSER]:
        response = api_client.post(
            "/api/auth/login",
            data={"email": account.email, "password": account.password},
            content_type="application/json",
        )
        assert response.status_code == 200, account.email


def test_a_failed_audit_write_rolls_the_sign_up_back():
    def refuse(**kwargs):
        raise DatabaseError("audit storage unavailable")

    audit_event.connect(refuse, dispatch_uid="test.refuse")
    try:
        with pytest.raises(DatabaseError):
            patient_register(
                email="rollback@example.com",
                password="Lange-Reise-2026",
                first_name="Rolf",
                last_name="Zurück",
                date_of_birth=datetime.date(1970, 1, 1),
                client=ClientInfo(),
            )
    finally:
        audit_event.disconnect(dispatch_uid="test.refuse")

    assert not User.objects.exists()
    assert not ApiToken.objects.exists()
    assert not PatientKey.objects.exists()
    assert not PatientProfile.objects.exists()
    assert not AuditEvent.objects.exists()
