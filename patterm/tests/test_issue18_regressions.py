"""Issue 18's defects found from outside, each a regression test (they failed before the fix)."""

import json

import pytest

from accounts.models import Role
from booking.tests.factories import bearer, practitioner_create, slot_create, token_for
from consent.models import EmergencyAccess

pytestmark = pytest.mark.django_db


def test_a_superscript_digit_in_the_clinic_filter_is_422_not_500(api_client):
    # Found by schemathesis: "73¹".isdigit() is true, int("73¹") raises (a 500).
    slot_create()

    response = api_client.get("/api/slots", {"clinic": "73¹"})

    assert response.status_code == 422, response.content[:300]
    assert response.json()["code"] == "validation_error"


def test_a_unicode_digit_in_a_session_id_is_404_not_500(api_client, make_patient):
    patient = make_patient()

    response = api_client.delete("/api/auth/sessions/token-²", **bearer(patient.raw))

    assert response.status_code == 404, response.content[:300]


def test_a_patient_declaring_emergency_access_gets_403_whatever_the_body(api_client, make_patient):
    patient = make_patient()
    url = f"/api/medical/patients/{patient.user.pk}/emergency-access"

    for body in ({"justification": "fünfzehn Zeich"}, {}, {"justification": "x" * 40}):
        response = api_client.post(
            url, data=json.dumps(body), content_type="application/json", **bearer(patient.raw)
        )

        assert response.status_code == 403, response.content[:300]
        assert response.json()["code"] == "not_a_practitioner"
    assert not EmergencyAccess.objects.exists()


@pytest.mark.parametrize(
    ("seed_url", "target"), [("/docs", "/api/docs"), ("/openapi.json", "/api/openapi.json")]
)
def test_the_seed_readme_urls_redirect_to_the_api_docs(api_client, seed_url, target):
    response = api_client.get(seed_url)

    assert response.status_code == 301
    assert response["Location"] == target
    assert api_client.get(target).status_code == 200


def test_a_clinic_admin_posting_slots_gets_403_before_the_body_is_read(api_client):
    practitioner = practitioner_create()
    token = token_for(practitioner)

    response = api_client.post(
        "/api/medical/slots", data="{kaputt", content_type="application/json", **bearer(token)
    )

    assert response.status_code == 403, (Role.PRACTITIONER, response.content[:300])
