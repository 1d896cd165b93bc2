"""Insurance on the patient's profile (issue 16): stored encrypted, the
Krankenversichertennummer checked with its check digit, a wrong one an error naming the field
(API and portal), nothing stored."""

import pytest
from django.db import connection
from django.test import Client

from booking.tests.factories import bearer, post_json  # noqa: F401
from vault.models import PatientProfile, kvnr_check_digit, validate_kvnr

pytestmark = pytest.mark.django_db

# The example number the GKV-Spitzenverband's rules use; its check digit is 0.
VALID_KVNR = "A123456780"


def test_the_check_digit_of_the_published_example():
    assert kvnr_check_digit("A12345678") == 0
    validate_kvnr(VALID_KVNR)


@pytest.mark.parametrize(
    "number",
    ["A123456781", "A12345678", "a123456780", "1123456780", "A12345678X", "A\uff1123456780"],
)
def test_wrong_numbers_are_refused(number):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        validate_kvnr(number)


def put(client, token, body):
    import json

    return client.put(
        "/api/patient/insurance",
        data=json.dumps(body),
        content_type="application/json",
        **bearer(token),
    )


def test_the_api_stores_insurance_encrypted(api_client, make_patient):
    patient = make_patient()

    response = put(
        api_client,
        patient,
        {
            "insurance_type": "gesetzlich",
            "insurer_name": "AOK Nordost",
            "insurance_number": "a 123 456 780",
        },
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "insurance_type": "gesetzlich",
        "insurer_name": "AOK Nordost",
        "insurance_number": VALID_KVNR,
    }
    assert api_client.get("/api/patient/insurance", **bearer(patient)).json() == response.json()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT insurance_type, insurer_name, insurance_number FROM vault_patientprofile "
            "WHERE patient_id = %s",
            [patient.user.pk],
        )
        stored = cursor.fetchone()
    assert all(value.startswith("pt1$") for value in stored)
    assert not any("AOK" in value or VALID_KVNR in value for value in stored)


def test_the_api_names_a_wrong_number_and_stores_nothing(api_client, make_patient):
    patient = make_patient()

    response = put(
        api_client,
        patient,
        {"insurance_type": "gesetzlich", "insurer_name": None, "insurance_number": "A123456781"},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert [e["field"] for e in body["errors"]] == ["insurance_number"]
    assert PatientProfile.objects.get(patient=patient.user).insurance_type is None
    assert put(
        api_client,
        patient,
        {"insurance_type": "gkv", "insurer_name": "", "insurance_number": ""},
    ).json()["errors"][0]["field"] == ("insurance_type")


def test_staff_have_no_insurance_endpoint(api_client):
    from booking.tests.factories import practitioner_create, token_for

    response = api_client.get("/api/patient/insurance", **bearer(token_for(practitioner_create())))

    assert response.status_code == 403


def test_the_portal_page_shows_the_error_at_the_number(make_patient):
    patient = make_patient().user
    client = Client()
    client.force_login(patient)

    wrong = client.post(
        "/insurance/",
        {"insurance_type": "privat", "insurer_name": "", "insurance_number": "A123456789"},
    )
    right = client.post(
        "/insurance/",
        {"insurance_type": "privat", "insurer_name": "Debeka", "insurance_number": VALID_KVNR},
    )

    assert wrong.status_code == 422
    assert wrong.context["form"].errors.keys() == {"insurance_number"}
    assert right.status_code == 302
    profile = PatientProfile.objects.get(patient=patient)
    assert (profile.insurance_type, profile.insurer_name, profile.insurance_number) == (
        "privat",
        "Debeka",
        VALID_KVNR,
    )
    assert "Debeka" in client.get("/insurance/").content.decode()
