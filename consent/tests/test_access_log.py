"""The patient's access log: who (role and clinic, never a name), when, what, why, on which
basis, and how it ended; paginated; a constant number of queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from audit.tests.builders import staff_with_token
from consent.tests.conftest import World
from vault.services import record_read

pytestmark = pytest.mark.django_db

LOG = "/api/patient/access-log"


def _log(world: World, **params):
    response = world.client.get(
        LOG, params, HTTP_AUTHORIZATION=f"Bearer {world.actors['owner'].token}"
    )
    assert response.status_code == 200, response.content
    return response


def test_lists_a_read_on_consent_and_a_denied_read(world):
    url = f"/api/medical/patients/{world.patient.pk}/record"
    reader, stranger = world.actors["consent"], world.actors["no_consent"]
    assert world.request("GET", url, reader).status_code == 200
    assert world.request("GET", url, stranger).status_code == 404

    rows = _log(world, limit=2).json()["items"]

    denied, allowed = rows  # newest first
    assert denied["action"] == allowed["action"] == "record.read"
    assert (allowed["outcome"], allowed["basis"], allowed["purpose"]) == (
        "success",
        "consent",
        "treatment",
    )
    assert allowed["actor"]["role"] == "practitioner"
    assert allowed["actor"]["clinic"]["id"] == reader.clinic_id
    assert (denied["outcome"], denied["basis"]) == ("denied", "")
    assert denied["actor"]["clinic"]["id"] == stranger.clinic_id


def test_shows_roles_and_clinics_never_names_or_emails(world):
    url = f"/api/medical/patients/{world.patient.pk}/record"
    for name in ("own_clinic", "consent", "no_consent", "emergency"):
        world.request("GET", url, world.actors[name])

    response = _log(world, limit=200)

    text = response.content.decode()
    for actor in world.actors.values():
        if actor.user is not None and actor.user.role != Role.PATIENT:
            assert actor.user.email not in text
    for name in ("Anna", "Berger", "Erika", "Mustermann", world.patient.email):
        assert name not in text
    for row in response.json()["items"]:
        assert set(row["actor"]) == {"role", "clinic"}
        assert row["actor"]["role"] in {"practitioner", "clinic_admin", "auditor", ""}
        if row["actor"]["clinic"] is not None:
            assert set(row["actor"]["clinic"]) == {"id", "name"}


def test_holds_only_what_others_did_with_this_patients_data(world):
    items = _log(world, limit=200).json()["items"]
    assert items, "the world has emergency declarations and a booking snapshot at least"
    # The patient's own actions (sign-up, booking, consents, own reads) are not listed.
    assert not {row["action"] for row in items} & {"consent.grant", "auth.register"}
    other = world.actors["other_patient"]
    response = world.client.get(LOG, HTTP_AUTHORIZATION=f"Bearer {other.token}")
    assert response.json() == {"items": [], "count": 0}


def test_is_paginated(world):
    for _ in range(7):
        record_read(actor=world.actors["consent"].user, patient=world.patient)
    total = _log(world).json()["count"]
    assert total >= 7
    first = _log(world, limit=3).json()
    second = _log(world, limit=3, offset=3).json()
    assert (first["count"], len(first["items"]), len(second["items"])) == (total, 3, 3)
    assert first["items"] != second["items"]
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        response = world.client.get(
            LOG, bad, HTTP_AUTHORIZATION=f"Bearer {world.actors['owner'].token}"
        )
        assert response.status_code == 422


def _queries_for_log(world, events: int) -> int:
    """Reads by practitioners of `events` different clinics, each its own clinic name."""
    already = _log(world, limit=200).json()["count"]
    assert already <= events
    for _ in range(events - already):
        reader, _token = staff_with_token(role=Role.PRACTITIONER)
        record_read(actor=reader, patient=world.patient)
    with CaptureQueriesContext(connection) as queries:
        response = _log(world, limit=200)
    assert response.json()["count"] == events
    assert (
        len(
            {
                row["actor"]["clinic"]["id"]
                for row in response.json()["items"]
                if row["actor"]["clinic"]
            }
        )
        > 1
    )
    return len(queries)


def test_the_access_log_takes_a_constant_number_of_queries(world):
    five = _queries_for_log(world, 5)
    thirty = _queries_for_log(world, 30)
    assert five == thirty, (five, thirty)
    print(f"access log: {five} queries for 5 and for 30 events")
