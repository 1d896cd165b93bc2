"""The consent and audit matrix of /api/medical/ (consent/tests/test_api.py), over /fhir/R4/:
the same world, the same thirteen actors, and for each read the status, whether the diagnosis
shows, and the one record.read row it leaves (allowed or denied)."""

import pytest

from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from audit.tests.builders import head_seq
from consent.tests.conftest import MARKER_BODY, MARKER_TITLE
from fhirapi.tests.conftest import FHIR, fhir_headers
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

ACTORS = [
    "owner",
    "other_patient",
    "own_clinic",
    "no_consent",
    "consent",  # diagnoses
    "consent_other_category",  # allergies and medication only
    "revoked_consent",
    "expired_consent",
    "emergency",
    "expired_emergency",
    "clinic_admin",
    "auditor",
    "anonymous",
]

# Endpoint -> (url, one status per actor in ACTORS order). Someone else's data is 404, never
# 403: the answer does not tell that the patient or the entry exists.
MATRIX = {
    "search Condition": (
        lambda w: f"/Condition?patient={w.patient.pk}",
        [200, 404, 200, 404, 200, 200, 404, 404, 200, 404, 404, 404, 401],
    ),
    "read Condition": (
        lambda w: f"/Condition/{w.entry.pk}",
        [200, 404, 200, 404, 200, 404, 404, 404, 200, 404, 404, 404, 401],
    ),
    "read Patient": (
        lambda w: f"/Patient/{w.patient.pk}",
        [200, 404, 200, 404, 200, 200, 404, 404, 200, 404, 404, 404, 401],
    ),
    "search Patient": (
        lambda w: f"/Patient?_id={w.patient.pk}",
        [200, 404, 200, 404, 200, 200, 404, 404, 200, 404, 404, 404, 401],
    ),
    "read Appointment": (
        lambda w: f"/Appointment/{w.appointment.pk}",
        [200, 404, 200, 404, 404, 404, 404, 404, 404, 404, 200, 404, 401],
    ),
}

SEES_THE_DIAGNOSIS = {
    (endpoint, actor)
    for endpoint in ("search Condition", "read Condition")
    for actor in ("owner", "own_clinic", "consent", "emergency")
}

_ALLOWED = {"owner", "own_clinic", "consent", "emergency"}
# The record.read row each request leaves: every decision about medical data is audited.
RECORD_READS = {
    "search Condition": {
        actor: "success" if actor in _ALLOWED else "denied" for actor in ACTORS[:-1]
    },
    "read Condition": {
        actor: "success" if actor in _ALLOWED else "denied" for actor in ACTORS[:-1]
    },
    "read Patient": {
        actor: "success" if actor in _ALLOWED | {"consent_other_category"} else "denied"
        for actor in ACTORS[:-1]
    },
}
RECORD_READS["search Patient"] = RECORD_READS["read Patient"]

CELLS = [(endpoint, actor) for endpoint in MATRIX for actor in ACTORS]


@pytest.mark.parametrize(("endpoint", "actor_name"), CELLS, ids=[f"{e}|{a}" for e, a in CELLS])
def test_fhir_matrix(fhir_world, endpoint, actor_name):
    world = fhir_world
    url, statuses = MATRIX[endpoint]
    expected = statuses[ACTORS.index(actor_name)]
    actor = world.actors[actor_name]
    started = head_seq()

    headers = fhir_headers(actor.token) if actor.token else {}
    response = world.client.get(FHIR + url(world), **headers)

    assert response.status_code == expected, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    text = response.content.decode()
    assert (MARKER_TITLE in text or MARKER_BODY in text) == (
        (endpoint, actor_name) in SEES_THE_DIAGNOSIS
    )
    if actor_name != "owner":
        assert world.patient.email not in text
    if expected != 200:
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == {401: "login", 404: "not-found"}[expected]
    reads = list(
        AuditEvent.objects.filter(seq__gt=started, action=AuditAction.RECORD_READ).values(
            "actor_id", "outcome", "clinic_id", "subject_ref"
        )
    )
    outcome = RECORD_READS.get(endpoint, {}).get(actor_name)
    if outcome is None:
        assert reads == []
    else:
        assert reads == [
            {
                "actor_id": actor.user.pk,
                "outcome": outcome,
                "clinic_id": actor.clinic_id,
                "subject_ref": subject_pseudonym(world.patient.pk),
            }
        ]


def test_a_revoked_consent_stops_fhir_reads_on_the_very_next_request(fhir_world):
    from consent.services import consent_revoke

    world = fhir_world
    url = f"{FHIR}/Condition/{world.entry.pk}"
    headers = fhir_headers(world.actors["consent"].token)
    assert world.client.get(url, **headers).status_code == 200
    consent_revoke(patient=world.patient, consent_id=world.consent.pk)
    assert world.client.get(url, **headers).status_code == 404


def test_the_basis_of_each_fhir_read_is_in_the_patients_access_log(fhir_world):
    world = fhir_world
    for name in ("own_clinic", "consent", "emergency"):
        response = world.client.get(
            f"{FHIR}/Condition/{world.entry.pk}", **fhir_headers(world.actors[name].token)
        )
        assert response.status_code == 200
    rows = AuditEvent.objects.filter(
        action=AuditAction.RECORD_READ, object_type="record_entry", outcome="success"
    ).order_by("seq")
    assert [row.details["bases"] for row in rows] == [["own_clinic"], ["consent"], ["emergency"]]


def test_a_consent_for_some_categories_opens_those_resource_types_only(fhir_world):
    world = fhir_world
    allergy = record_entry_write(
        author=world.doctor,
        patient=world.patient,
        clinic=world.home,
        category="allergy",
        title="Penicillin",
    )
    headers = fhir_headers(world.actors["consent_other_category"].token)  # allergy, medication
    read = world.client.get(f"{FHIR}/AllergyIntolerance/{allergy.pk}", **headers)
    assert read.status_code == 200
    assert read.json()["code"] == {"text": "Penicillin"}
    found = world.client.get(f"{FHIR}/AllergyIntolerance?patient={world.patient.pk}", **headers)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [str(allergy.pk)]
    assert world.client.get(f"{FHIR}/Condition/{world.entry.pk}", **headers).status_code == 404
    searched = world.client.get(f"{FHIR}/Condition?patient={world.patient.pk}", **headers)
    assert searched.json()["total"] == 0


def test_staff_reading_appointments_is_audited_per_patient_as_the_schedule(fhir_world):
    world = fhir_world
    started = head_seq()
    for name in ("own_clinic", "clinic_admin"):
        actor = world.actors[name]
        response = world.client.get(
            f"{FHIR}/Appointment?patient={world.patient.pk}", **fhir_headers(actor.token)
        )
        assert response.json()["total"] == 1
    rows = AuditEvent.objects.filter(seq__gt=started, action=AuditAction.SCHEDULE_READ)
    assert [(row.actor_id, row.subject_ref, row.clinic_id) for row in rows.order_by("seq")] == [
        (world.actors[name].user.pk, subject_pseudonym(world.patient.pk), world.home.pk)
        for name in ("own_clinic", "clinic_admin")
    ]
    owner = world.client.get(f"{FHIR}/Appointment", **fhir_headers(world.actors["owner"].token))
    assert owner.json()["total"] == 1
    assert rows.count() == 2  # the patient reading their own leaves no snapshot row
