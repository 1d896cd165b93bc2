"""Relatives through HTTP: S1 extended (every relative endpoint x holder, the relative, an
unrelated account holding a relative of their own, the clinic's practitioner and admin, the
anonymous), unknown ids, bad input, and the takeover ending the holder's token at once."""

import datetime
import json
import re
from dataclasses import dataclass

import pytest
from django.core import mail
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from accounts.models import Role, User
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from audit.tests.builders import bearer, head_seq, slot_make, staff_with_token, token_for
from booking.models import Appointment, AppointmentStatus
from consent.models import Consent, RelativeLink
from consent.services import consent_grant
from vault import relatives
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

CHILD_NAME = "Zqxkindname"
MARKER_TITLE = "Zqxkindbefund U10"


def years_ago(years: int) -> datetime.date:
    today = timezone.localdate()
    return today.replace(year=today.year - years)


@dataclass
class World:
    holder: User
    relative: User
    appointment: Appointment
    consent: Consent
    tokens: dict
    slot_id: str
    client: Client

    def request(self, method, url, actor, body=None):
        headers = bearer(self.tokens[actor]) if self.tokens.get(actor) else {}
        if method == "GET":
            return self.client.get(url, **headers)
        return self.client.post(
            url, data=json.dumps(body or {}), content_type="application/json", **headers
        )


@pytest.fixture
def world(make_patient, django_capture_on_commit_callbacks):
    holder = make_patient(email="vater@example.com")
    unrelated = make_patient(email="nachbarin@example.com")
    child = relatives.relative_add(
        holder=holder.user, first_name=CHILD_NAME, last_name="M", date_of_birth=years_ago(16)
    )
    relatives.relative_add(
        holder=unrelated.user, first_name="Eigenes", last_name="Kind", date_of_birth=years_ago(4)
    )
    clinic = ClinicFactory(name="Kinderarztpraxis Eppendorf")
    doctor, doctor_token = staff_with_token(role=Role.PRACTITIONER, clinic=clinic)
    _admin, admin_token = staff_with_token(role=Role.CLINIC_ADMIN, clinic=clinic)
    from booking.services import appointment_book

    appointment = appointment_book(
        patient=child.user,
        actor=holder.user,
        slot_id=slot_make(practitioner=doctor, clinic=clinic).public_id,
    )
    record_entry_write(author=doctor, patient=child.user, clinic=clinic, title=MARKER_TITLE)
    consent = consent_grant(
        patient=child.user,
        actor=holder.user,
        grantee_clinic_id=ClinicFactory().pk,
        source_clinic_id=None,
        categories=["allergy"],
        valid_until=None,
    )
    tokens = {
        "holder": holder.raw,
        # The relative cannot sign in; a token made behind the service's back shows that even
        # then the relative endpoints are not theirs.
        "relative": token_for(child.user).raw,
        "unrelated": unrelated.raw,
        "practitioner": doctor_token.raw,
        "clinic_admin": admin_token.raw,
        "anonymous": None,
    }
    return World(
        holder=holder.user,
        relative=child.user,
        appointment=appointment,
        consent=consent,
        tokens=tokens,
        slot_id=slot_make(practitioner=doctor, clinic=clinic, days=4).public_id,
        client=Client(),
    )


ACTORS = ["holder", "relative", "unrelated", "practitioner", "clinic_admin", "anonymous"]
OF_THE_HOLDER = [200, 404, 404, 403, 403, 401]

# Endpoint -> (method, url, body, one expected status per actor in ACTORS order).
MATRIX = {
    "GET relatives": ("GET", lambda w: "/api/relatives", None, [200, 200, 200, 403, 403, 401]),
    "POST relatives": (
        "POST",
        lambda w: "/api/relatives",
        {"first_name": "Neu", "last_name": "Kind", "date_of_birth": "2024-01-01"},
        [201, 403, 201, 403, 403, 401],
    ),
    "GET relative": ("GET", lambda w: f"/api/relatives/{w.relative.pk}", None, OF_THE_HOLDER),
    "GET relative record": (
        "GET",
        lambda w: f"/api/relatives/{w.relative.pk}/record",
        None,
        OF_THE_HOLDER,
    ),
    "GET relative appointments": (
        "GET",
        lambda w: f"/api/relatives/{w.relative.pk}/appointments",
        None,
        OF_THE_HOLDER,
    ),
    "POST relative appointments": (
        "POST",
        lambda w: f"/api/relatives/{w.relative.pk}/appointments",
        lambda w: {"slot_id": w.slot_id},
        [201, 404, 404, 403, 403, 401],
    ),
    "GET relative consents": (
        "GET",
        lambda w: f"/api/relatives/{w.relative.pk}/consents",
        None,
        OF_THE_HOLDER,
    ),
    "POST relative consents": (
        "POST",
        lambda w: f"/api/relatives/{w.relative.pk}/consents",
        lambda w: {"grantee_clinic": w.consent.grantee_clinic_id, "categories": ["diagnosis"]},
        [201, 404, 404, 403, 403, 401],
    ),
    "POST relative consent revoke": (
        "POST",
        lambda w: f"/api/relatives/{w.relative.pk}/consents/{w.consent.pk}/revoke",
        None,
        OF_THE_HOLDER,
    ),
    "GET relative access log": (
        "GET",
        lambda w: f"/api/relatives/{w.relative.pk}/access-log",
        None,
        OF_THE_HOLDER,
    ),
    "GET relative export": (
        "GET",
        lambda w: f"/api/relatives/{w.relative.pk}/export",
        None,
        OF_THE_HOLDER,
    ),
    "POST relative invitation": (
        "POST",
        lambda w: f"/api/relatives/{w.relative.pk}/invitation",
        {"email": "kind@example.com"},
        [202, 404, 404, 403, 403, 401],
    ),
    # The relative's appointment through the appointments endpoints: the holder and the
    # patient themself reach it, the clinic's staff too, nobody else.
    "GET the relative's appointment": (
        "GET",
        lambda w: f"/api/appointments/{w.appointment.pk}",
        None,
        [200, 200, 404, 200, 200, 401],
    ),
    "POST cancel the relative's appointment": (
        "POST",
        lambda w: f"/api/appointments/{w.appointment.pk}/cancel",
        None,
        [200, 200, 404, 200, 200, 401],
    ),
}

SEES_THE_RECORD = {("GET relative record", "holder"), ("GET relative export", "holder")}
CELLS = [(endpoint, actor) for endpoint in MATRIX for actor in ACTORS]


def _state() -> dict:
    return {
        "users": User.objects.count(),
        "links": RelativeLink.objects.count(),
        "invited": RelativeLink.objects.filter(invited_at__isnull=False).count(),
        "booked": Appointment.objects.filter(status=AppointmentStatus.BOOKED).count(),
        "consents": Consent.objects.count(),
        "revoked": Consent.objects.filter(revoked_at__isnull=False).count(),
    }


@pytest.mark.parametrize(("endpoint", "actor"), CELLS, ids=[f"{e}|{a}" for e, a in CELLS])
def test_s1_relatives_matrix(world, endpoint, actor):
    method, url, body, statuses = MATRIX[endpoint]
    expected = statuses[ACTORS.index(actor)]
    body = body(world) if callable(body) else body
    before, started = _state(), head_seq()

    response = world.request(method, url(world), actor, body)

    assert response.status_code == expected, response.content
    text = response.content.decode()
    assert (MARKER_TITLE in text) == ((endpoint, actor) in SEES_THE_RECORD)
    if actor not in ("holder", "relative") and endpoint.startswith(("GET relative", "POST rel")):
        assert CHILD_NAME not in text
    if not 200 <= expected < 300:
        assert _state() == before  # nothing changed on a refusal
        assert set(response.json()) >= {"detail", "code"}
    reads = list(
        AuditEvent.objects.filter(seq__gt=started, action=AuditAction.RECORD_READ).values_list(
            "actor_id", "outcome", "subject_ref", "details"
        )
    )
    if (endpoint, actor) in SEES_THE_RECORD:
        assert [(a, o, s, d["bases"]) for a, o, s, d in reads] == [
            (world.holder.pk, "success", subject_pseudonym(world.relative.pk), ["holder"])
        ]
    else:
        assert reads == []
    if 200 <= expected < 300 and actor == "holder" and method == "POST":
        # Whatever the holder changed for the relative is audited as acting for them.
        rows = AuditEvent.objects.filter(seq__gt=started, actor_id=world.holder.pk)
        assert rows.exists()
        for row in rows.exclude(action=AuditAction.REMINDER_SEND):
            if row.subject_ref == subject_pseudonym(world.relative.pk):
                assert row.details.get("bases") == ["holder"], row.action


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/record"),
        ("GET", "/appointments"),
        ("POST", "/appointments"),
        ("GET", "/consents"),
        ("POST", "/consents"),
        ("GET", "/access-log"),
        ("GET", "/export"),
        ("POST", "/invitation"),
    ],
)
@pytest.mark.parametrize("relative_id", ["999999", "9223372036854775808"])
def test_a_relative_id_that_does_not_exist_is_404_with_detail_and_code(
    world, method, path, relative_id
):
    body = {
        "slot_id": world.slot_id,
        "email": "x@example.com",
        "grantee_clinic": world.consent.grantee_clinic_id,
        "categories": ["allergy"],
    }
    response = world.request(method, f"/api/relatives/{relative_id}{path}", "holder", body)
    assert response.status_code == 404
    assert set(response.json()) >= {"detail", "code"}


def test_bad_input_is_a_field_error(world):
    future = (timezone.localdate() + datetime.timedelta(days=1)).isoformat()
    cases = [
        ({"first_name": "A", "last_name": "B", "date_of_birth": future}, "date_of_birth"),
        ({"first_name": "A", "last_name": "B", "date_of_birth": "01.01.2020"}, "date_of_birth"),
        ({"first_name": "", "last_name": "B", "date_of_birth": "2020-01-01"}, "first_name"),
        (
            {
                "first_name": "A",
                "last_name": "B",
                "date_of_birth": "2020-01-01",
                "relationship": "x",
            },
            "relationship",
        ),
        (
            {
                "first_name": "A",
                "last_name": "B",
                "date_of_birth": "2020-01-01",
                "insurance_number": "A123456781",
            },
            "insurance_number",
        ),
        (
            {
                "first_name": "A",
                "last_name": "B",
                "date_of_birth": "2020-01-01",
                "insurance_type": "gkv",
            },
            "insurance_type",
        ),
    ]
    for body, field in cases:
        before = _state()
        response = world.request("POST", "/api/relatives", "holder", body)
        assert response.status_code == 422, body
        assert field in [e["field"] for e in response.json()["errors"]]
        assert _state() == before
    response = world.request(
        "POST", f"/api/relatives/{world.relative.pk}/invitation", "holder", {"email": "kein"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


def test_the_holder_books_and_sees_who_booked_and_staff_see_it_in_the_schedule(world):
    booked = world.request(
        "POST",
        f"/api/relatives/{world.relative.pk}/appointments",
        "holder",
        {"slot_id": world.slot_id, "reason": "U10"},
    )
    assert booked.status_code == 201
    assert booked.json()["booked_by"] == "holder" and booked.json()["reason"] == "U10"
    schedule = world.request("GET", "/api/medical/schedule", "practitioner")
    rows = {row["id"]: row for row in schedule.json()}
    row = rows[booked.json()["id"]]
    assert row["booked_by"] == "holder"
    assert row["patient"]["first_name"] == CHILD_NAME
    assert "vater@example.com" not in schedule.content.decode()  # nothing of the holder
    # The holder's own list is theirs: the child's appointments are under /relatives.
    own = world.request("GET", "/api/appointments", "holder").json()
    assert own["count"] == 0


def test_the_access_log_shows_the_holder_basis(world):
    world.request("GET", f"/api/relatives/{world.relative.pk}/record", "holder")
    log = world.request("GET", f"/api/relatives/{world.relative.pk}/access-log", "holder").json()
    by_action = {row["action"]: row for row in log["items"]}
    assert by_action["record.read"]["basis"] == "holder"
    assert by_action["record.read"]["actor"] == {"role": "patient", "clinic": None}
    assert by_action["appointment.book"]["basis"] == "holder"
    assert by_action["consent.grant"]["basis"] == "holder"


@override_settings(PATTERM_RELATIVE_OWN_ACCOUNT_AGE=15)
def test_after_the_takeover_the_holders_token_reaches_nothing_of_the_relative(
    world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invited = world.request(
            "POST",
            f"/api/relatives/{world.relative.pk}/invitation",
            "holder",
            {"email": "kind@example.com"},
        )
    assert invited.status_code == 202
    token = re.search(r"/relatives/takeover/(\S+)/", mail.outbox[-1].body).group(1)
    assert (
        world.request("GET", f"/api/relatives/{world.relative.pk}/record", "holder").status_code
        == 200
    )

    relatives.relative_takeover(token=token, password="Eigenes-Konto-2026")

    for path in ("", "/record", "/appointments", "/consents", "/access-log", "/export"):
        response = world.request("GET", f"/api/relatives/{world.relative.pk}{path}", "holder")
        assert response.status_code == 404, path
    gone = world.request("GET", f"/api/appointments/{world.appointment.pk}", "holder")
    assert gone.status_code == 404
    listed = world.request("GET", "/api/relatives", "holder").json()
    assert listed["count"] == 0
    # The holder's token itself still works for the holder's own data.
    assert world.request("GET", "/api/patient/record", "holder").status_code == 200
