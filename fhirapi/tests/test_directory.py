"""Practitioner, Organization and Location on the read API: every reference the API gives
resolves on the server (the twin of the export's bundle-resolution test), and the directory
shows what the portal's public search shows, nothing more (decision 0020)."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, Role
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditEvent
from audit.tests.builders import slot_make
from fhirapi.tests.conftest import FHIR, fhir_headers, fhir_token
from fhirapi.tests.schema import assert_r4_valid
from vault import relatives
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

ENTRY_TYPES = ("Condition", "AllergyIntolerance", "MedicationStatement", "Observation")


def _get(client, url, token, **headers):
    response = client.get(url if url.startswith("http") else FHIR + url, **fhir_headers(token))
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    return response


def _references(value) -> list[str]:
    """Every `reference` in a resource, however deep."""
    found = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.append(value["reference"])
        for item in value.values():
            found += _references(item)
    elif isinstance(value, list):
        for item in value:
            found += _references(item)
    return found


def _search_urls(record, who: str) -> list[str]:
    """A search of every type the API serves, as this token may ask it: a practitioner names
    the patient."""
    from accounts.scopes import FHIR_RESOURCE_TYPES

    urls = []
    for resource_type in FHIR_RESOURCE_TYPES:
        url = f"/{resource_type}"
        if who == "doctor" and resource_type in ENTRY_TYPES:
            url += f"?patient={record.patient.pk}"
        elif who == "doctor" and resource_type == "Patient":
            url += f"?_id={record.patient.pk}"
        urls.append(url)
    return urls


@pytest.mark.parametrize("who", ["patient", "holder", "doctor"])
def test_every_reference_the_api_gives_resolves_on_the_server(api_client, record, who):
    """`holder`: the patient's token with user/ scopes, which also reads their child's
    record."""
    token = record.doctor_token if who == "doctor" else record.patient_token
    child = None
    if who == "holder":
        token = fhir_token(record.patient, "user/*.rs")
        child = relatives.relative_add(
            holder=record.patient,
            first_name="Paul",
            last_name="Pfeiffer",
            date_of_birth=datetime.date.today() - datetime.timedelta(days=365 * 6),
        ).link.relative
        record_entry_write(
            author=record.doctor, patient=child, clinic=record.clinic, category="diagnosis"
        )
    slot_make(practitioner=record.doctor, clinic=record.clinic, days=5)  # a free one for all
    resources = []
    for url in _search_urls(record, who):
        bundle = _get(api_client, url, token)
        assert bundle.status_code == 200, (url, bundle.content)
        for entry in bundle.json().get("entry", []):
            if entry["search"]["mode"] == "match":
                resources.append(entry["resource"])
                read = _get(api_client, entry["fullUrl"], token)  # each read by its fullUrl
                assert read.status_code == 200, (entry["fullUrl"], read.content)
                assert read.json() == entry["resource"]
    assert {r["resourceType"] for r in resources} >= {
        "Patient", "Appointment", *ENTRY_TYPES, "Slot", "Schedule",
        "Practitioner", "Organization", "Location",
    }  # fmt: skip
    walked: dict[str, dict] = {}
    pending = [ref for resource in resources for ref in _references(resource)]
    while pending:  # the resources references lead to, and theirs in turn
        reference = pending.pop()
        if reference in walked:
            continue
        response = _get(api_client, f"/{reference}", token)
        assert response.status_code == 200, (reference, response.content)
        body = response.json()
        assert f"{body['resourceType']}/{body['id']}" == reference
        walked[reference] = body
        pending += _references(body)
    assert {ref.split("/")[0] for ref in walked} == {
        "Patient", "Practitioner", "Organization", "Location", "Schedule",
    }  # fmt: skip
    if child is not None:
        assert f"Patient/{child.pk}" in walked
    assert f"Practitioner/{record.doctor.pk}" in walked
    assert f"Organization/{record.clinic.pk}" in walked
    assert f"Location/{record.clinic.pk}" in walked


def test_a_departed_practitioners_entries_still_resolve_their_author(api_client, record):
    Membership.objects.filter(user=record.doctor).delete()
    response = _get(api_client, f"/Practitioner/{record.doctor.pk}", record.patient_token)
    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    record.doctor.is_active = False
    record.doctor.save()
    entry = record.entries["diagnosis"]
    condition = _get(api_client, f"/Condition/{entry.pk}", record.patient_token).json()
    assert condition["recorder"]["reference"] == f"Practitioner/{record.doctor.pk}"
    author = _get(api_client, "/" + condition["recorder"]["reference"], record.patient_token)
    assert author.status_code == 200 and author.json()["active"] is False


def test_a_deactivated_practitioners_slots_point_to_no_schedule_that_is_not_served(
    api_client, record
):
    slot = slot_make(practitioner=record.doctor, clinic=record.clinic, days=5)
    record.doctor.is_active = False
    record.doctor.save()
    assert _get(api_client, "/Schedule", record.patient_token).json()["total"] == 0
    resource = _get(api_client, f"/Slot/{slot.public_id}", record.patient_token).json()
    assert resource["schedule"] == {"display": record.clinic.name}
    assert_r4_valid(resource)


def test_the_directory_shows_only_public_data(api_client, record):
    record.clinic.city = "Hamburg"
    record.clinic.address = "Lange Reihe 1, 20099 Hamburg"
    record.clinic.save()
    practitioner = _get(api_client, f"/Practitioner/{record.doctor.pk}", record.patient_token)
    organization = _get(api_client, f"/Organization/{record.clinic.pk}", record.patient_token)
    location = _get(api_client, f"/Location/{record.clinic.pk}", record.patient_token)
    assert practitioner.json() == {
        "resourceType": "Practitioner",
        "id": str(record.doctor.pk),
        "active": True,
        "name": [{"text": "Anna Berger"}],
    }
    assert organization.json() == {
        "resourceType": "Organization",
        "id": str(record.clinic.pk),
        "active": True,
        "name": "Praxis Mitte",
    }
    assert location.json()["address"] == {
        "text": "Lange Reihe 1, 20099 Hamburg",
        "city": "Hamburg",
        "country": "DE",
    }
    assert location.json()["managingOrganization"] == {
        "reference": f"Organization/{record.clinic.pk}",
        "display": "Praxis Mitte",
    }
    for response in (practitioner, organization, location):
        assert record.doctor.email not in response.content.decode()
        assert "telecom" not in response.json()
        assert_r4_valid(response.json())


def test_patients_and_non_practising_staff_are_not_practitioners(api_client, record):
    admin = StaffFactory(clinic=record.clinic, role=Role.CLINIC_ADMIN)
    for user in (record.patient, admin):
        response = _get(api_client, f"/Practitioner/{user.pk}", record.doctor_token)
        assert response.status_code == 404, response.content
        assert response.json()["issue"][0]["code"] == "not-found"
        found = _get(api_client, f"/Practitioner?_id={user.pk}", record.doctor_token).json()
        assert found["total"] == 0


def test_directory_searches_by_their_parameters(api_client, record):
    other_clinic = ClinicFactory(name="Zahnarzt am Markt", city="Köln")
    StaffFactory(clinic=other_clinic, first_name="Jonas", last_name="Albers")
    token = record.patient_token

    def ids(url):
        response = _get(api_client, url, token)
        assert response.status_code == 200, (url, response.content)
        return [entry["resource"]["id"] for entry in response.json().get("entry", [])]

    berger = str(record.doctor.pk)
    assert ids("/Practitioner?name=berg") == [berger]  # the start of the last name, any case
    assert ids("/Practitioner?name=ANNA") == [berger]
    assert ids("/Practitioner?name=erger") == []  # not the middle of a word
    assert len(ids("/Practitioner?name=anna,jonas")) == 2  # commas: OR
    assert ids("/Practitioner?name=anna&name=jonas") == []  # repeated: AND
    assert ids(f"/Practitioner?_id={berger}&name=anna") == [berger]
    assert ids("/Organization?name=praxis") == [str(record.clinic.pk)]
    assert ids("/Organization?name=zahn") == [str(other_clinic.pk)]
    assert ids("/Location?address-city=köln") == [str(other_clinic.pk)]
    assert ids(f"/Location?organization=Organization/{record.clinic.pk}") == [str(record.clinic.pk)]
    assert ids(f"/Location?organization={other_clinic.pk}&address-city=Berlin") == []
    assert ids(f"/Location?_id={other_clinic.pk}") == [str(other_clinic.pk)]


@pytest.mark.parametrize("resource_type", ["Practitioner", "Organization", "Location"])
def test_count_pages_the_directory(api_client, record, resource_type):
    for number in range(4):
        StaffFactory(clinic=ClinicFactory(), last_name=f"Zander{number}")
    seen, url = [], f"/{resource_type}?_count=2"
    while url:
        response = _get(api_client, url, record.patient_token)
        assert response.status_code == 200, response.content
        bundle = response.json()
        assert len(bundle["entry"]) <= 2
        seen += [entry["resource"]["id"] for entry in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == bundle["total"] == 5


def test_lenient_and_strict_handling_on_the_directory(api_client, record):
    url = f"{FHIR}/Practitioner?name=anna&telecom=030"
    strict = api_client.get(url, **fhir_headers(record.patient_token))
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["code"] == "not-supported"
    also_strict = api_client.get(
        url, **fhir_headers(record.patient_token, HTTP_PREFER="handling=strict")
    )
    assert also_strict.status_code == 400
    lenient = api_client.get(
        url, **fhir_headers(record.patient_token, HTTP_PREFER="handling=lenient")
    )
    assert lenient.status_code == 200
    bundle = lenient.json()
    assert bundle["total"] == 1
    assert "telecom" in bundle["entry"][-1]["resource"]["issue"][0]["diagnostics"]
    assert_r4_valid(bundle)
    malformed = api_client.get(
        f"{FHIR}/Location?organization=Organization/x",
        **fhir_headers(record.patient_token, HTTP_PREFER="handling=lenient"),
    )
    assert malformed.status_code == 400


def test_the_directory_takes_the_scopes_and_is_not_audited(api_client, record):
    clinic = record.clinic.pk
    no_directory = fhir_token(record.patient, "patient/Condition.rs")
    read_only = fhir_token(record.doctor, "user/Location.r")
    before = AuditEvent.objects.count()
    assert _get(api_client, f"/Location/{clinic}", no_directory).status_code == 403
    assert _get(api_client, f"/Location/{clinic}", read_only).status_code == 200
    assert _get(api_client, "/Location", read_only).status_code == 403
    assert _get(api_client, f"/Organization/{clinic}", read_only).status_code == 403
    assert _get(api_client, "/Practitioner", record.patient_token).status_code == 200
    assert AuditEvent.objects.count() == before  # public data: no record read to audit


def _queries(client, url, token) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(FHIR + url, **fhir_headers(token))
    assert response.status_code == 200, response.content
    return len(queries)


def test_directory_searches_take_a_constant_number_of_queries(api_client, record):
    token = record.patient_token
    urls = ["/Practitioner", "/Practitioner?name=a", "/Organization", "/Location?address-city=b"]
    before = {url: _queries(api_client, url, token) for url in urls}
    for number in range(6):
        clinic = ClinicFactory()
        StaffFactory(clinic=clinic, first_name="Anna")
        StaffFactory(clinic=clinic, first_name="Arne")
        slot_make(practitioner=record.doctor, clinic=record.clinic, days=number + 4)
        record_entry_write(author=record.doctor, patient=record.patient, clinic=record.clinic)
    after = {url: _queries(api_client, url, token) for url in urls}
    assert after == before
