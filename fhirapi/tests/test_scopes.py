"""SMART App Launch v2 scopes: issued at login, checked per type and interaction (r read,
s search), `patient/` limited to the patient themself, `user/` a holder's relatives too; a
scoped token is for /fhir only, an unscoped one for /api only."""

import datetime
import json

import pytest

from accounts.models import ApiToken, Role
from accounts.scopes import scope_errors
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditAction, AuditEvent
from audit.tests.builders import bearer, head_seq, token_for
from fhirapi.tests.conftest import FHIR, fhir_headers, fhir_token
from vault import relatives
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"


def _login(client, email, scope=None, password=PASSWORD):
    body = {"email": email, "password": password}
    if scope is not None:
        body["scope"] = scope
    return client.post("/api/auth/login", data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    "scope",
    ["patient/*.rs", "user/*.rs", "patient/Condition.rs user/Slot.s", "patient/Patient.r"],
)
def test_a_patient_logs_in_with_scopes_and_gets_them_back(api_client, make_patient, scope):
    issued = make_patient(email="ida@example.com")
    response = _login(api_client, "ida@example.com", f" {scope}  {scope} ")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == scope  # normalised: once each, single spaces
    assert ApiToken.objects.filter(user=issued.user).latest("pk").scope == scope
    login = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN).latest("seq")
    assert login.details == {"scope": scope}


@pytest.mark.parametrize(
    ("scope", "role"),
    [
        ("patient/*.read", Role.PATIENT),  # SMART v1
        ("patient/*.cruds", Role.PATIENT),  # this server only reads
        ("patient/*.sr", Role.PATIENT),  # letters out of order
        ("patient/PractitionerRole.rs", Role.PATIENT),  # a type not served
        ("system/*.rs", Role.PATIENT),
        ("patient/*.rs", Role.PRACTITIONER),  # no patient in context for staff
        ("openid", Role.PATIENT),
        ("", Role.PATIENT),
        ("user/*.rs " * 200, Role.PATIENT),
    ],
)
def test_scopes_outside_smart_v2_read_and_search_are_refused(scope, role):
    assert scope_errors(scope, role=role)


def test_a_bad_scope_at_login_is_422_and_issues_no_token(api_client, make_patient):
    issued = make_patient(email="ida@example.com")
    before = ApiToken.objects.filter(user=issued.user).count()
    response = _login(api_client, "ida@example.com", "patient/*.write")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "scope"
    assert ApiToken.objects.filter(user=issued.user).count() == before


def test_a_practitioner_may_not_have_patient_scopes(api_client):
    StaffFactory(email="dr@example.com", password=PASSWORD, clinic=ClinicFactory())
    assert _login(api_client, "dr@example.com", "patient/*.rs").status_code == 422
    assert _login(api_client, "dr@example.com", "user/*.rs").status_code == 200


def test_a_scoped_token_is_refused_on_the_api_but_may_log_out(api_client, make_patient):
    make_patient(email="ida@example.com")
    token = _login(api_client, "ida@example.com", "patient/*.rs").json()["token"]
    me = api_client.get("/api/me", **bearer(token))
    assert me.status_code == 403
    assert me.json()["code"] == "fhir_token"
    assert api_client.get("/api/patient/record", **bearer(token)).status_code == 403
    assert api_client.get(f"{FHIR}/Patient", **fhir_headers(token)).status_code == 200
    assert api_client.post("/api/auth/logout", **bearer(token)).status_code == 204
    assert api_client.get(f"{FHIR}/Patient", **fhir_headers(token)).status_code == 401


def test_a_token_without_scopes_is_refused_on_fhir_with_an_operation_outcome(
    api_client, make_patient
):
    issued = make_patient()
    response = api_client.get(f"{FHIR}/Patient", **fhir_headers(issued.raw))
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert api_client.get("/api/me", **bearer(issued.raw)).status_code == 200


@pytest.mark.parametrize(
    ("scope", "url", "expected"),
    [
        ("patient/Condition.rs", "/Condition/{diagnosis}", 200),
        ("patient/Condition.rs", "/Condition", 200),
        ("patient/Condition.rs", "/Observation/{lab}", 403),
        ("patient/Condition.rs", "/Observation", 403),
        ("patient/Condition.rs", "/Patient/{patient}", 403),
        ("patient/Condition.r", "/Condition/{diagnosis}", 200),
        ("patient/Condition.r", "/Condition", 403),  # read, not search
        ("patient/Condition.s", "/Condition", 200),
        ("patient/Condition.s", "/Condition/{diagnosis}", 403),  # search, not read
        ("patient/*.rs", "/Observation/{lab}", 200),
        ("user/Slot.rs", "/Slot", 200),
        ("user/Slot.rs", "/Schedule", 403),
    ],
)
def test_each_type_and_interaction_needs_its_scope(api_client, make_patient, scope, url, expected):
    issued = make_patient()
    doctor = StaffFactory(clinic=ClinicFactory())
    ids = {"patient": issued.user.pk}
    for name, category in (("diagnosis", "diagnosis"), ("lab", "lab_result")):
        ids[name] = record_entry_write(
            author=doctor, patient=issued.user, clinic=doctor.memberships.get().clinic,
            category=category,
        ).pk  # fmt: skip
    token = fhir_token(issued.user, scope)
    started = head_seq()
    response = api_client.get(FHIR + url.format(**ids), **fhir_headers(token))
    assert response.status_code == expected, response.content
    if expected == 403:
        assert response.json()["issue"][0]["code"] == "forbidden"
        if "Slot" not in url and "Schedule" not in url:  # a refused medical read is audited
            refused = AuditEvent.objects.get(seq__gt=started, action=AuditAction.RECORD_READ)
            assert (refused.outcome, refused.details["reason"]) == ("denied", "scope")


@pytest.fixture
def holder_with_child(make_patient):
    holder = make_patient(email="mama@example.com")
    child = relatives.relative_add(
        holder=holder.user,
        first_name="Paul",
        last_name="M",
        date_of_birth=datetime.date.today() - datetime.timedelta(days=365 * 6),
    )
    doctor = StaffFactory(clinic=ClinicFactory())
    clinic = doctor.memberships.get().clinic
    mine = record_entry_write(author=doctor, patient=holder.user, clinic=clinic, title="Mama")
    childs = record_entry_write(
        author=doctor, patient=child.link.relative, clinic=clinic, title="Paul"
    )
    return holder.user, child.id, mine, childs


def test_patient_scopes_reach_the_patient_only_and_user_scopes_their_relatives_too(
    api_client, holder_with_child
):
    holder, child_id, mine, childs = holder_with_child
    own = fhir_headers(fhir_token(holder, "patient/*.rs"))
    everyone = fhir_headers(fhir_token(holder, "user/*.rs"))

    found = api_client.get(f"{FHIR}/Condition", **own).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(mine.pk)]
    assert api_client.get(f"{FHIR}/Condition/{childs.pk}", **own).status_code == 404
    assert api_client.get(f"{FHIR}/Condition?patient={child_id}", **own).status_code == 404
    assert api_client.get(f"{FHIR}/Patient/{child_id}", **own).status_code == 404

    found = api_client.get(f"{FHIR}/Condition", **everyone).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {str(mine.pk), str(childs.pk)}
    assert api_client.get(f"{FHIR}/Condition/{childs.pk}", **everyone).status_code == 200
    child = api_client.get(f"{FHIR}/Patient/{child_id}", **everyone).json()
    assert child["name"] == [{"family": "M", "given": ["Paul"]}]
    holder_reads = AuditEvent.objects.filter(
        action=AuditAction.RECORD_READ, outcome="success", object_type="record_entry"
    ).latest("seq")
    assert holder_reads.details["bases"] == ["holder"]


def test_an_unscoped_api_token_still_works_for_the_api(api_client, make_patient):
    issued = make_patient()
    assert (
        api_client.get("/api/patient/record", **bearer(token_for(issued.user))).status_code == 200
    )
