"""R4's general parameters `_format` and `_pretty`, and the Accept header (http.html#mime-type):
Patterm answers in JSON; whoever asks for XML or Turtle only gets a 406 OperationOutcome."""

import json

import pytest

from fhirapi.tests.conftest import FHIR
from fhirapi.tests.schema import assert_r4_valid
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

JSON_FORMATS = [
    "json",
    "application/json",
    "application/fhir+json",
    "application/fhir json",  # an unencoded "+" in the query string
    "application/fhir+json;fhirVersion=4.0",
    "APPLICATION/FHIR+JSON",
    "application/json+fhir",
]
OTHER_FORMATS = ["xml", "application/fhir+xml", "text/xml", "ttl", "text/turtle", "html", ""]


def urls(record) -> list[str]:
    """Metadata, a read and a search."""
    return [
        "/metadata",
        f"/Patient/{record.patient.pk}",
        f"/Condition?patient={record.patient.pk}",
    ]


def get(api_client, record, url, **headers):
    return api_client.get(
        FHIR + url, HTTP_AUTHORIZATION=f"Bearer {record.patient_token}", **headers
    )


@pytest.mark.parametrize("wanted", JSON_FORMATS)
def test_format_naming_json_is_answered(api_client, record, wanted):
    for url in urls(record):
        joiner = "&" if "?" in url else "?"
        response = get(api_client, record, f"{url}{joiner}_format={wanted}")
        assert response.status_code == 200, (url, response.content)
        assert response["Content-Type"].startswith("application/fhir+json")
        assert response.json()["resourceType"] in {"CapabilityStatement", "Patient", "Bundle"}


@pytest.mark.parametrize("wanted", OTHER_FORMATS)
def test_format_naming_anything_else_is_406(api_client, record, wanted):
    for url in urls(record):
        joiner = "&" if "?" in url else "?"
        response = get(api_client, record, f"{url}{joiner}_format={wanted}")
        assert response.status_code == 406, (url, response.content)
        assert response["Content-Type"].startswith("application/fhir+json")
        body = response.json()
        assert body["issue"][0]["code"] == "not-supported"
        assert "application/fhir+json" in body["issue"][0]["diagnostics"]
        assert_r4_valid(body)


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/fhir+json", 200),
        ("application/json", 200),
        ("*/*", 200),
        ("application/*", 200),
        ("application/fhir+xml;q=0.9, application/fhir+json;q=0.8", 200),
        ("application/fhir+xml", 406),
        ("text/html", 406),
        ("text/turtle, application/xml", 406),
    ],
)
def test_the_accept_header_must_admit_json(api_client, record, accept, status):
    for url in urls(record):
        response = get(api_client, record, url, HTTP_ACCEPT=accept)
        assert response.status_code == status, (url, accept, response.content)
        assert response["Content-Type"].startswith("application/fhir+json")


def test_format_overrides_the_accept_header(api_client, record):
    # R4: "_format ... overrides the HTTP Accept header", for clients that cannot set it.
    url = f"/Patient/{record.patient.pk}"
    assert get(api_client, record, url, HTTP_ACCEPT="application/fhir+xml").status_code == 406
    response = get(api_client, record, f"{url}?_format=json", HTTP_ACCEPT="application/fhir+xml")
    assert response.status_code == 200
    response = get(api_client, record, f"{url}?_format=xml", HTTP_ACCEPT="application/fhir+json")
    assert response.status_code == 406


def test_pretty_indents_the_same_resource(api_client, record):
    url = f"/Patient/{record.patient.pk}"
    plain = get(api_client, record, url)
    pretty = get(api_client, record, f"{url}?_pretty=true")
    assert pretty.status_code == 200
    assert b"\n  " in pretty.content and b"\n" not in plain.content
    assert json.loads(pretty.content) == plain.json()
    assert get(api_client, record, f"{url}?_pretty=false").content == plain.content


def test_a_search_keeps_format_and_pretty_in_its_next_link(api_client, record):
    record_entry_write(
        author=record.doctor,
        patient=record.patient,
        clinic=record.clinic,
        category="lab_result",
        title="Kreatinin 0,9 mg/dl",
        body="Befund",
        code="2160-0",
    )
    response = get(
        api_client,
        record,
        f"/Observation?patient={record.patient.pk}&_count=1&_format=json&_pretty=true",
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == 2
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "_format=json" in links["next"] and "_pretty=true" in links["next"]
    assert [entry["search"]["mode"] for entry in bundle["entry"]] == ["match"], (
        "general parameters are no unknown search parameters"
    )


@pytest.mark.parametrize(
    "query",
    ["_pretty=yes", "_pretty=", "_format=json&_format=json", "_pretty=true&_pretty=false"],
)
def test_bad_general_parameters_are_400(api_client, record, query):
    response = get(api_client, record, f"/Patient/{record.patient.pk}?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["issue"][0]["code"] == "invalid"
