"""Role before body (issue 18): every role-restricted operation answers a caller of the wrong
role with the same 403 whatever it sends, before its path, query or body is read, and stores
nothing. The operations and their roles come from the API itself, so a new one is covered."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.auth import BearerTokenAuth
from accounts.models import Role
from patterm.api import api
from patterm.tests.test_bad_input import counts, url_of
from patterm.tests.test_bad_input import everyone as everyone

pytestmark = pytest.mark.django_db

ROLE_RESTRICTED_PREFIXES = ("/medical/", "/audit/", "/patient/")


def operations():
    """(method, path, allowed roles) of every operation; roles empty for any signed-in user."""
    found = []
    for router in api._get_bound_routers():  # the operations as served, router auth applied
        prefix = router.prefix
        for path, path_view in router.path_operations.items():
            for operation in path_view.operations:
                roles = frozenset().union(
                    *(
                        auth.roles
                        for auth in operation.auth_callbacks
                        if isinstance(auth, BearerTokenAuth)
                    )
                )
                for method in operation.methods:
                    plain = re.sub(r"\{(?:\w+:)?(\w+)\}", r"{\1}", f"/{prefix}/{path}")
                    found.append((method, re.sub("/+", "/", plain), roles))
    return found


RESTRICTED = [(m, p, roles) for m, p, roles in operations() if roles]
VALID_BODIES = {
    "/medical/patients/{patient_id}/entries": {
        "category": "note",
        "title": "Befund",
        "body": "Unauffällig.",
    },
    "/medical/patients/{patient_id}/emergency-access": {
        "justification": "Bewusstlos eingeliefert, Allergien unbekannt."
    },
    "/medical/slots": {
        "clinic": 1,
        "practitioner": 1,
        "specialty": "allgemeinmedizin",
        "date_from": "2030-01-07",
        "date_to": "2030-01-08",
        "start_time": "09:00",
        "end_time": "10:00",
    },
    "/appointments": {"slot_id": "slot-001"},
    "/waitlist": {"specialty": "allgemeinmedizin"},
    "/patient/consents": {"grantee_clinic": 1, "source_clinic": None, "categories": ["note"]},
}
BODIES = {
    "empty": "",
    "invalid": '{"justification": "fünfzehn Zeich", "limit": "¹", "slot_id": [',
    "valid": None,  # VALID_BODIES, or {}
}
TABLE = [
    (method, path, role, body)
    for method, path, roles in RESTRICTED
    for role in Role.values
    if role not in roles
    for body in BODIES
]


def test_every_operation_under_a_restricted_prefix_declares_its_roles():
    # A new route under /api/medical/, /api/audit/ or /api/patient/ that forgot its roles.
    undeclared = [
        (method, path)
        for method, path, roles in operations()
        if path.startswith(ROLE_RESTRICTED_PREFIXES) and not roles
    ]
    assert not undeclared
    assert len(TABLE) > 100


@pytest.mark.parametrize(("method", "path", "role", "body"), TABLE)
def test_a_wrong_role_gets_the_same_403_whatever_it_sends(
    api_client, everyone, method, path, role, body
):
    tokens, patient = everyone
    before = counts()
    sent = BODIES[body]
    if sent is None:
        sent = json.dumps(VALID_BODIES.get(path, {}))
    url = url_of(path, patient.pk).replace("{entry_id}", "00000000-0000-4000-8000-000000000000")
    url = url.replace("{offer_id}", "00000000-0000-4000-8000-000000000000")
    query = "?limit=%C2%B9&date_from=gestern&format=xml"

    response = api_client.generic(
        method,
        "/api" + url + query,
        sent,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tokens[role]}",
    )

    assert response.status_code == 403, (role, method, path, body, response.content[:300])
    reference = api_client.generic(
        method,
        "/api" + url,
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tokens[role]}",
    )
    assert response.json() == reference.json()
    assert counts() == before


@pytest.mark.parametrize(("method", "path"), sorted({(m, p) for m, p, _ in RESTRICTED}))
def test_without_credentials_it_is_401_before_the_body(api_client, method, path):
    url = "/api" + path.replace("{", "x").replace("}", "")
    response = api_client.generic(method, url, "{kaputt", content_type="application/json")

    assert response.status_code in (401, 404), response.content[:300]
    if response.status_code == 404:  # a UUID path the placeholder does not match
        assert "{" in path


# --- Numbers from text: every numeric query parameter of the schema ---------------------------

SCHEMA = api.get_openapi_schema(path_prefix="/api")
NUMERIC = sorted(
    (method.upper(), path, parameter["name"])
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
    for parameter in operation.get("parameters", [])
    if parameter["in"] == "query"
    and "integer"
    in {
        parameter["schema"].get("type"),
        *(a.get("type") for a in parameter["schema"].get("anyOf", [])),
    }
)
NOT_A_NUMBER = st.one_of(
    st.text(
        alphabet=st.characters(categories=["Nd", "No", "Nl"], exclude_characters="0123456789"),
        min_size=1,
    ),  # ٧٣, ¹, Ⅻ
    st.builds(
        lambda s, n: f"{s}{n}",
        st.sampled_from(["+", "-", " ", "\t", "0x", "½"]),
        st.integers(0, 99),
    ),
    st.builds(lambda n: f"{n} ", st.integers(0, 99)),
    st.integers(min_value=2**62 + 1).map(str),
    st.just(""),
    st.just("5.0"),
    st.just("5_0"),
)


def test_there_are_numeric_query_parameters_to_probe():
    assert {name for _, _, name in NUMERIC} >= {"limit", "offset", "practitioner"}


@pytest.mark.parametrize(("method", "path", "name"), NUMERIC)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=NOT_A_NUMBER)
def test_numeric_query_parameters_take_ascii_digits_only(
    api_client, everyone, method, path, name, value
):
    tokens, patient = everyone
    url = url_of(path.removeprefix("/api"), patient.pk)

    for role, token in tokens.items():
        response = api_client.generic(
            method,
            f"/api{url}",
            b"",
            QUERY_STRING=f"{name}={_quote(value)}",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

        assert response.status_code < 500, (role, path, name, value, response.content[:300])
        if response.status_code != 403 and value != "":
            assert response.status_code == 422, (role, path, name, value)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
