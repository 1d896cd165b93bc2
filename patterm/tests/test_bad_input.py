"""Bad input to every endpoint: a 4xx in the error shape, nothing stored, never a 500 (S4)."""

import json

import pytest

from accounts.models import ApiToken, User
from audit.models import AuditEvent

VALID = {
    "email": "neu@example.com",
    "password": "Sicher!123",
    "first_name": "Pat",
    "last_name": "Demo",
    "date_of_birth": "1990-01-01",
}
TEN_MEGABYTES = "x" * 10_000_000

pytestmark = pytest.mark.django_db

BAD_BODIES = {
    "malformed JSON": ('{"email": "neu@example.com",', "application/json"),
    "JSON array": (json.dumps([VALID]), "application/json"),
    "JSON string": (json.dumps("hallo"), "application/json"),
    "JSON null": ("null", "application/json"),
    "empty body": ("", "application/json"),
    "wrong content type": (json.dumps(VALID), "text/xml"),
    "wrong types": (json.dumps({**VALID, "email": 5, "first_name": ["Pat"]}), "application/json"),
    "missing fields": (json.dumps({"email": "neu@example.com"}), "application/json"),
    "10 MB string": (json.dumps({**VALID, "first_name": TEN_MEGABYTES}), "application/json"),
    "long name": (json.dumps({**VALID, "last_name": "y" * 101}), "application/json"),
    "long password": (json.dumps({**VALID, "password": "Ab1!" * 300}), "application/json"),
    "impossible date": (json.dumps({**VALID, "date_of_birth": "2024-02-30"}), "application/json"),
    "German date": (json.dumps({**VALID, "date_of_birth": "01.01.1990"}), "application/json"),
    "timestamp date": (json.dumps({**VALID, "date_of_birth": 631152000}), "application/json"),
    "future birth": (json.dumps({**VALID, "date_of_birth": "2999-01-01"}), "application/json"),
    "not an e-mail": (json.dumps({**VALID, "email": "neu(at)example.com"}), "application/json"),
    "blank name": (json.dumps({**VALID, "first_name": "   "}), "application/json"),
    "control characters": (json.dumps({**VALID, "last_name": "De\x00mo"}), "application/json"),
}


def assert_error_shape(response, *allowed_statuses):
    assert response.status_code in allowed_statuses, response.content[:300]
    body = response.json()
    assert body["detail"]
    assert body["code"]
    return body


@pytest.mark.parametrize("case", BAD_BODIES)
@pytest.mark.parametrize("url", ["/api/auth/register/patient", "/api/auth/login"])
def test_bad_bodies_are_4xx_and_store_nothing(api_client, url, case):
    body, content_type = BAD_BODIES[case]

    response = api_client.post(url, data=body, content_type=content_type)

    assert 400 <= response.status_code < 500, response.content[:300]
    assert_error_shape(response, response.status_code)
    assert not User.objects.exists()
    assert not ApiToken.objects.exists()
    if url.endswith("register/patient"):
        assert not AuditEvent.objects.exists()


def test_validation_errors_name_the_fields(api_client):
    body = {**VALID, "date_of_birth": "2024-02-30", "email": "kaputt"}

    response = api_client.post(
        "/api/auth/register/patient", data=json.dumps(body), content_type="application/json"
    )

    error = assert_error_shape(response, 422)
    assert error["code"] == "validation_error"
    assert {e["field"] for e in error["errors"]} == {"date_of_birth", "email"}


@pytest.mark.parametrize(
    "value",
    ["'; DROP TABLE accounts_user; --", "<script>alert(1)</script>", 'Ö\'Brien "Jr." & Söhne'],
)
def test_sql_and_html_metacharacters_are_just_data(api_client, value):
    body = {**VALID, "first_name": value, "last_name": value}

    response = api_client.post(
        "/api/auth/register/patient", data=json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 201
    assert response.json()["user"]["first_name"] == value
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "limit=-5", "offset=-1", "limit=abc", "limit=99999999999999"]
)
def test_bad_paging_is_422(api_client, query):
    response = api_client.get(f"/api/clinics?{query}")

    assert_error_shape(response, 422)


def test_unknown_route_and_method_answer_json(api_client):
    assert assert_error_shape(api_client.get("/api/nirgendwo"), 404)["code"] == "not_found"
    method = assert_error_shape(api_client.delete("/api/auth/login"), 405)
    assert method["code"] == "method_not_allowed"


def test_bearer_on_a_public_endpoint_is_harmless(api_client):
    response = api_client.get("/api/clinics", HTTP_AUTHORIZATION="Bearer rubbish")

    assert response.status_code == 200


def test_the_schema_documents_the_error_shape_for_every_operation(api_client):
    # Found by schemathesis: 400/401/403/404/409/422 answers were undocumented on every operation.
    schema = api_client.get("/api/openapi.json").json()
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "code"}

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            default = operation["responses"]["default"]["content"]["application/json"]
            assert default["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path)

    body = assert_error_shape(api_client.get("/api/me"), 401)
    assert set(body) <= set(error["properties"])


# --- Every endpoint (issue 10): the operations come from the schema, so a new one is covered ---

from django.apps import apps  # noqa: E402

from accounts.models import Role  # noqa: E402
from booking.tests.factories import (  # noqa: E402
    bearer,
    practitioner_create,
    slot_create,
    staff_create,
    token_for,
)
from patterm.api import api  # noqa: E402

SCHEMA = api.get_openapi_schema(path_prefix="/api")
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
]
WITH_BODY = [(m, p) for m, p, o in OPERATIONS if "requestBody" in o]
WITH_PATH_ID = [(m, p) for m, p, o in OPERATIONS if "{" in p]
PAGED = [
    (m, p) for m, p, o in OPERATIONS if any(x["name"] == "limit" for x in o.get("parameters", []))
]
DATED = [
    (m, p, x["name"])
    for m, p, o in OPERATIONS
    for x in o.get("parameters", [])
    if x["name"] in ("date_from", "date_to", "since", "until")
]
EVERY_BAD_BODY = {
    "malformed JSON": ('{"slot_id": "slot-001",', "application/json"),
    "JSON array": ("[1, 2]", "application/json"),
    "JSON null": ("null", "application/json"),
    "wrong types": (
        json.dumps({"slot_id": 5, "categories": "x", "title": ["t"]}),
        "application/json",
    ),
    "10 MB string": (
        json.dumps({k: TEN_MEGABYTES for k in ("slot_id", "title", "body", "justification")}),
        "application/json",
    ),
    "wrong content type": ("<a/>", "text/xml"),
}
STORED = [
    "booking.Appointment",
    "booking.Slot",
    "consent.Consent",
    "consent.EmergencyAccess",
    "vault.RecordEntry",
    "accounts.User",
    "vault.ErasureRequest",
    "consent.RelativeLink",
]


@pytest.fixture
def everyone(make_patient):
    """A token of every role, and the rows a bad request must leave untouched."""
    patient = make_patient()
    practitioner = practitioner_create()
    clinic = practitioner.memberships.first().clinic
    slot_create(practitioner=practitioner)
    tokens = {
        Role.PATIENT: patient.raw,
        Role.PRACTITIONER: token_for(practitioner).raw,
        Role.CLINIC_ADMIN: token_for(staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)).raw,
        Role.AUDITOR: token_for(staff_create(clinic=clinic, role=Role.AUDITOR)).raw,
    }
    return tokens, patient.user


def counts() -> dict:
    return {label: apps.get_model(label).objects.count() for label in STORED}


def url_of(path: str, patient_id: int) -> str:
    return (
        path.replace("{patient_id}", str(patient_id))
        .replace("{relative_id}", str(patient_id))
        .replace("{appointment_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{consent_id}", "00000000-0000-4000-8000-000000000000")
    )


@pytest.mark.parametrize("case", EVERY_BAD_BODY)
@pytest.mark.parametrize(("method", "path"), WITH_BODY)
def test_every_body_endpoint_refuses_bad_bodies_as_every_role(
    api_client, everyone, method, path, case
):
    tokens, patient = everyone
    body, content_type = EVERY_BAD_BODY[case]
    before = counts()

    for token in tokens.values():
        response = api_client.generic(
            method, url_of(path, patient.pk), body, content_type=content_type, **bearer(token)
        )

        assert 400 <= response.status_code < 500, (path, response.content[:300])
        assert_error_shape(response, response.status_code)
    assert counts() == before
    assert api_client.get("/api/health").status_code == 200


@pytest.mark.parametrize(
    "unknown",
    ["999999999", "0", "-1", "9" * 30, "nicht-da", "00000000-0000-4000-8000-000000000000"],
)
@pytest.mark.parametrize(("method", "path"), WITH_PATH_ID)
def test_unknown_ids_are_404_as_every_role(api_client, everyone, method, path, unknown):
    tokens, _ = everyone
    url = path.replace("{patient_id}", unknown).replace("{appointment_id}", unknown)
    url = url.replace("{consent_id}", unknown).replace("{relative_id}", unknown)
    before = counts()

    for role, token in tokens.items():
        response = api_client.generic(
            method, url, "{}", content_type="application/json", **bearer(token)
        )

        # 403 for a role that may never use the operation, whatever the id; else 404 (or 422 for
        # a body the operation needs): never a 500, never a hint that the id exists.
        assert response.status_code in (403, 404, 422), (role, url, response.content[:300])
        assert_error_shape(response, response.status_code)
    assert counts() == before


@pytest.mark.parametrize(
    "query", ["limit=-1", "offset=-5", "limit=10000000000000000000", "offset=99999999999999999999"]
)
@pytest.mark.parametrize(("method", "path"), PAGED)
def test_negative_or_huge_paging_is_422_everywhere(api_client, everyone, method, path, query):
    tokens, patient = everyone

    for token in tokens.values():
        response = api_client.get(f"{url_of(path, patient.pk)}?{query}", **bearer(token))

        assert response.status_code in (403, 422), (path, query, response.content[:300])
        assert_error_shape(response, response.status_code)


@pytest.mark.parametrize("value", ["2024-02-30", "2026-13-01", "gestern", "9999999-01-01"])
@pytest.mark.parametrize(("method", "path", "name"), DATED)
def test_impossible_dates_are_422_everywhere(api_client, everyone, method, path, name, value):
    tokens, _ = everyone

    for token in tokens.values():
        response = api_client.get(f"{path}?{name}={value}", **bearer(token))

        assert response.status_code in (403, 422), (path, name, response.content[:300])
        assert_error_shape(response, response.status_code)


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_is_a_json_503_and_the_next_request_recovers(api_client, everyone):
    # Found by bench/load.py restarting PostgreSQL under load: every request in the outage was
    # a 500 `server_error`. The database is made unreachable for real (a port nothing listens
    # on, a file that cannot be opened), not mocked.
    from django.db import connection

    tokens, _ = everyone
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = "1"
    else:
        connection.settings_dict["NAME"] = "/nonexistent/patterm/unreachable.sqlite3"
    try:
        during = [
            api_client.get("/api/slots"),
            api_client.get("/api/me", **bearer(tokens[Role.PATIENT])),
            post_json_raw(api_client, "/api/appointments", {"slot_id": "slot-001"}, tokens),
        ]
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)

    for response in during:
        body = assert_error_shape(response, 503)
        assert body["code"] == "service_unavailable"
        assert response["Retry-After"]
    assert api_client.get("/api/slots").status_code == 200
    assert api_client.get("/api/me", **bearer(tokens[Role.PATIENT])).status_code == 200


def post_json_raw(client, url, body, tokens):
    return client.post(
        url, data=json.dumps(body), content_type="application/json", **bearer(tokens[Role.PATIENT])
    )
