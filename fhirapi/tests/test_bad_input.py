"""Bad input to the FHIR API: an OperationOutcome with the right status, never a 500, always
application/fhir+json."""

import pytest

from fhirapi.tests.conftest import FHIR, fhir_headers
from fhirapi.tests.schema import assert_r4_valid

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        # Unknown parameters, modifiers and prefixes (strict handling)
        ("/Condition?colour=red", 400, "not-supported"),
        ("/Condition?code:text=Hypertonie", 400, "not-supported"),
        ("/Patient?name=Pfeiffer", 400, "not-supported"),
        ("/Observation?date=ne2026-01-01", 400, "invalid"),
        ("/Observation?date=sa2026-01-01", 400, "invalid"),
        # Malformed dates
        ("/Observation?date=2026-13-01", 400, "invalid"),
        ("/Observation?date=2026-02-30", 400, "invalid"),
        ("/Observation?date=01.02.2026", 400, "invalid"),
        ("/Observation?date=2026-01-01T10:00", 400, "invalid"),  # a time needs its zone
        ("/Observation?date=", 400, "invalid"),
        ("/Condition?recorded-date=ge", 400, "invalid"),
        ("/Appointment?date=gestern", 400, "invalid"),
        ("/Slot?start=2026-01-01T25:00:00Z", 400, "invalid"),
        # _count and _offset
        ("/Condition?_count=0", 400, "invalid"),
        ("/Condition?_count=101", 400, "invalid"),
        ("/Condition?_count=abc", 400, "invalid"),
        ("/Condition?_count=-1", 400, "invalid"),
        ("/Condition?_count=1&_count=2", 400, "invalid"),
        ("/Condition?_offset=x", 400, "invalid"),
        # References and tokens
        ("/Condition?patient=Patient/abc", 400, "invalid"),
        ("/Condition?patient=Practitioner/1", 400, "invalid"),
        ("/Condition?patient=", 400, "invalid"),
        ("/Condition?code=http://loinc.org|", 400, "invalid"),
        ("/Slot?schedule=Schedule/x", 400, "invalid"),
        ("/Schedule?actor=Organization/1", 400, "invalid"),
        ("/Appointment?status=recorded", 400, "invalid"),
        ("/Slot?status=open", 400, "invalid"),
        # Ids: non-numeric, unknown, of the wrong shape
        ("/Patient/abc", 404, "not-found"),
        ("/Patient/999999", 404, "not-found"),
        ("/Patient/1%C2%B9", 404, "not-found"),
        ("/Condition/not-a-uuid", 404, "not-found"),
        ("/Condition/00000000-0000-0000-0000-000000000000", 404, "not-found"),
        ("/Appointment/42", 404, "not-found"),
        ("/Slot/slot-abc", 404, "not-found"),
        ("/Slot/slot-999999", 404, "not-found"),
        ("/Schedule/x", 404, "not-found"),
        ("/Schedule/99999999999999999999999", 404, "not-found"),
        # The directory types: unknown ids, parameters the type has not, malformed values
        ("/Practitioner/abc", 404, "not-found"),
        ("/Practitioner/999999", 404, "not-found"),
        ("/Practitioner/99999999999999999999999", 404, "not-found"),
        ("/Organization/x", 404, "not-found"),
        ("/Organization/999999", 404, "not-found"),
        ("/Location/1%C2%B9", 404, "not-found"),
        ("/Location/999999", 404, "not-found"),
        ("/Practitioner?email=anna@example.com", 400, "not-supported"),
        ("/Practitioner?telecom=030", 400, "not-supported"),
        ("/Practitioner?identifier=123", 400, "not-supported"),
        ("/Practitioner?name:exact=Berger", 400, "not-supported"),
        ("/Practitioner?name=", 400, "invalid"),
        ("/Practitioner?name=Berger,", 400, "invalid"),
        ("/Organization?address-city=Berlin", 400, "not-supported"),
        ("/Location?organization=Organization/abc", 400, "invalid"),
        ("/Location?organization=Patient/1", 400, "invalid"),
        ("/Location?address-city=", 400, "invalid"),
        ("/Practitioner?_count=0", 400, "invalid"),
        ("/Organization?_count=101", 400, "invalid"),
        ("/Location?_count=x", 400, "invalid"),
        ("/Location?_offset=-1", 400, "invalid"),
        # Types and interactions not served
        ("/PractitionerRole/1", 404, "not-supported"),
        ("/patient", 404, "not-supported"),
        ("/Patient/1/_history", 404, "not-supported"),
        ("/Patient/$everything", 404, "not-found"),
    ],
)
def test_bad_input_is_an_operation_outcome(api_client, record, url, status, code):
    response = api_client.get(FHIR + url, **fhir_headers(record.patient_token))
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    assert body["issue"][0]["diagnostics"]
    assert_r4_valid(body)


def test_another_patients_id_is_404_for_a_patient(api_client, record, make_patient):
    other = make_patient().user
    headers = fhir_headers(record.patient_token)
    for url in (
        f"/Patient/{other.pk}",
        f"/Patient?_id={other.pk}",
        f"/Condition?patient={other.pk}",
        f"/Condition?patient=Patient/{other.pk}",
        f"/Appointment?patient={other.pk}",
        f"/Observation?patient={record.patient.pk},{other.pk}",
    ):
        response = api_client.get(FHIR + url, **headers)
        assert response.status_code == 404, (url, response.content)
        assert response.json()["issue"][0]["code"] == "not-found"


def test_a_practitioner_must_name_the_patient(api_client, record):
    for url in ("/Condition", "/Patient"):
        response = api_client.get(FHIR + url, **fhir_headers(record.doctor_token))
        assert response.status_code == 400
        assert response.json()["issue"][0]["code"] == "required"


def test_lenient_handling_ignores_unknown_parameters_with_a_warning(api_client, record):
    url = f"{FHIR}/Condition?colour=red&code:text=x&patient={record.patient.pk}"
    response = api_client.get(
        url, **fhir_headers(record.patient_token, HTTP_PREFER="handling=lenient")
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == 1
    [match, outcome] = bundle["entry"]
    assert match["search"] == {"mode": "match"}
    assert outcome["search"] == {"mode": "outcome"}
    assert outcome["resource"]["issue"][0]["severity"] == "warning"
    assert "code:text, colour" in outcome["resource"]["issue"][0]["diagnostics"]
    assert_r4_valid(bundle)
    strict = api_client.get(
        url, **fhir_headers(record.patient_token, HTTP_PREFER="handling=strict")
    )
    assert strict.status_code == 400


def test_lenient_handling_still_refuses_a_malformed_value(api_client, record):
    response = api_client.get(
        f"{FHIR}/Observation?date=2026-99",
        **fhir_headers(record.patient_token, HTTP_PREFER="handling=lenient"),
    )
    assert response.status_code == 400


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("url", ["/Patient", "/Condition/00000000-0000-0000-0000-000000000000"])
def test_writes_are_405_with_an_operation_outcome(api_client, record, method, url):
    response = getattr(api_client, method)(FHIR + url, **fhir_headers(record.patient_token))
    assert response.status_code == 405
    assert response.json()["issue"][0]["code"] == "not-supported"


def test_the_base_url_itself_is_404_with_an_operation_outcome(api_client, record):
    response = api_client.get(f"{FHIR}/", **fhir_headers(record.patient_token))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer nonsense"}])
def test_no_or_a_dead_token_is_401_with_an_operation_outcome(api_client, headers):
    response = api_client.get(f"{FHIR}/Patient", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["issue"][0]["code"] == "login"


def test_the_capability_statement_is_public_and_lists_exactly_what_is_served(api_client):
    from fhirapi.search import SEARCH_PARAMETERS

    statement = api_client.get(f"{FHIR}/metadata").json()
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["application/fhir+json"]
    [rest] = statement["rest"]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == set(SEARCH_PARAMETERS)
    for resource_type, resource in served.items():
        assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
        assert {p["name"] for p in resource["searchParam"]} == set(SEARCH_PARAMETERS[resource_type])


def test_the_api_openapi_document_holds_no_fhir_path(api_client, record):
    paths = api_client.get("/api/openapi.json").json()["paths"]
    assert paths and not [path for path in paths if "fhir" in path.lower()]
    own = api_client.get(f"{FHIR}/openapi.json", **fhir_headers(record.patient_token))
    assert own.status_code == 404  # the FHIR API has none: metadata describes it


def test_a_closed_accounts_entries_and_profile_are_not_found(api_client, record):
    from accounts.models import User

    User.objects.filter(pk=record.patient.pk).update(is_active=False)
    headers = fhir_headers(record.doctor_token)
    for url in (
        f"/Condition/{record.entries['diagnosis'].pk}",
        f"/Condition?patient={record.patient.pk}",
        f"/Patient/{record.patient.pk}",
    ):
        assert api_client.get(FHIR + url, **headers).status_code == 404, url
