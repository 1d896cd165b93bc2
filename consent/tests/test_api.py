"""S1 (object-level access across every relationship to a patient's record), S2 (extra body
fields never applied), the consents API and emergency access, through HTTP."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role, User
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from audit.tests.builders import bearer, head_seq, staff_with_token, token_for
from consent.models import Consent, EmergencyAccess
from consent.tests.conftest import JUSTIFICATION, MARKER_BODY, MARKER_TITLE, World
from vault.models import RecordEntry
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

# --- S1: the matrix ---------------------------------------------------------------------------

ACTORS = [
    "owner",
    "other_patient",
    "own_clinic",  # practitioner of the clinic where the patient is in care
    "no_consent",  # practitioner of another clinic
    "consent",  # ... whose clinic holds the patient's consent for diagnoses
    "consent_other_category",  # ... consent for allergies and medication only
    "revoked_consent",
    "expired_consent",
    "emergency",  # ... who declared emergency access (active)
    "expired_emergency",  # ... declared yesterday, four hours long
    "clinic_admin",  # of the patient's clinic
    "auditor",
    "anonymous",
]

STAFF_403 = [403] * 10  # every practitioner, the clinic admin and the auditor

# Endpoint -> (method, url, body, one expected status per actor in ACTORS order).
# 9 endpoints x 13 actors = 117 cells.
MATRIX = {
    "GET medical record": (
        "GET",
        lambda w: f"/api/medical/patients/{w.patient.pk}/record",
        None,
        [403, 403, 200, 404, 200, 200, 404, 404, 200, 404, 403, 403, 401],
    ),
    "POST medical entries": (
        "POST",
        lambda w: f"/api/medical/patients/{w.patient.pk}/entries",
        {"category": "note", "title": "Kontrolle", "body": "Wiedervorstellung in 4 Wochen."},
        [403, 403, 201, 404, 404, 404, 404, 404, 201, 404, 403, 403, 401],
    ),
    "POST emergency access": (
        "POST",
        lambda w: f"/api/medical/patients/{w.patient.pk}/emergency-access",
        {"justification": JUSTIFICATION},
        # Break-glass is open to every practitioner by design: audited, reviewed, notified.
        [403, 403, 201, 201, 201, 201, 201, 201, 201, 201, 403, 403, 401],
    ),
    "GET consents": (
        "GET",
        lambda w: "/api/patient/consents",
        None,
        [200, 200, *STAFF_403, 401],
    ),
    "POST consents": (
        "POST",
        lambda w: "/api/patient/consents",
        lambda w: {"grantee_clinic": w.home.pk, "categories": ["allergy"]},
        [201, 201, *STAFF_403, 401],
    ),
    "POST consent revoke": (
        "POST",
        lambda w: f"/api/patient/consents/{w.consent.pk}/revoke",
        None,
        [200, 404, *STAFF_403, 401],
    ),
    "GET access log": (
        "GET",
        lambda w: "/api/patient/access-log",
        None,
        [200, 200, *STAFF_403, 401],
    ),
    "GET patient record": (
        "GET",
        lambda w: "/api/patient/record",
        None,
        [200, 200, *STAFF_403, 401],
    ),
    "GET appointment": (
        "GET",
        lambda w: f"/api/appointments/{w.appointment.pk}",
        None,
        [200, 404, 200, 404, 404, 404, 404, 404, 404, 404, 200, 404, 401],
    ),
}

# The cells whose answer shows the owner's diagnosis (title and body decrypted).
SEES_THE_DIAGNOSIS = {
    ("GET medical record", "own_clinic"),
    ("GET medical record", "consent"),
    ("GET medical record", "emergency"),
    ("GET patient record", "owner"),
}

# The record.read row each request leaves (outcome), or none. Roles that may never read a
# patient's record (403) leave a denied row too: every decision about a record is audited.
RECORD_READS = {
    "GET medical record": {
        "owner": "denied",
        "other_patient": "denied",
        "clinic_admin": "denied",
        "auditor": "denied",
        "own_clinic": "success",
        "no_consent": "denied",
        "consent": "success",
        "consent_other_category": "denied",  # 200, but every entry hidden
        "revoked_consent": "denied",
        "expired_consent": "denied",
        "emergency": "success",
        "expired_emergency": "denied",
    },
    "GET patient record": {"owner": "success", "other_patient": "success"},
}

CELLS = [(endpoint, actor) for endpoint in MATRIX for actor in ACTORS]
assert len(CELLS) == 117


def _state(world: World) -> dict:
    return {
        "entries": RecordEntry.objects.count(),
        "consents": Consent.objects.count(),
        "revoked": Consent.objects.filter(revoked_at__isnull=False).count(),
        "emergencies": EmergencyAccess.objects.count(),
        "owner_consent_revoked": Consent.objects.get(pk=world.consent.pk).revoked_at is not None,
    }


@pytest.mark.parametrize(("endpoint", "actor_name"), CELLS, ids=[f"{e}|{a}" for e, a in CELLS])
def test_s1_matrix(world, endpoint, actor_name):
    method, url, body, statuses = MATRIX[endpoint]
    expected = statuses[ACTORS.index(actor_name)]
    actor = world.actors[actor_name]
    body = body(world) if callable(body) else body
    before, started = _state(world), head_seq()

    response = world.request(method, url(world), actor, body)

    assert response.status_code == expected, response.content
    text = response.content.decode()
    shows = MARKER_TITLE in text or MARKER_BODY in text
    assert shows == ((endpoint, actor_name) in SEES_THE_DIAGNOSIS)
    if actor_name != "owner":
        assert world.patient.email not in text
    if not 200 <= expected < 300:
        assert _state(world) == before  # nothing changed on a refusal
        assert set(response.json()) >= {"detail", "code"}

    reads = list(
        AuditEvent.objects.filter(seq__gt=started, action=AuditAction.RECORD_READ).values(
            "actor_id", "outcome", "clinic_id", "subject_ref"
        )
    )
    outcome = RECORD_READS.get(endpoint, {}).get(actor_name)
    if outcome is None:
        assert reads == []
    else:
        reads_own = endpoint == "GET patient record" and actor_name == "other_patient"
        subject = actor.user if reads_own else world.patient
        assert reads == [
            {
                "actor_id": actor.user.pk,
                "outcome": outcome,
                "clinic_id": actor.clinic_id,
                "subject_ref": subject_pseudonym(subject.pk),
            }
        ]

    if response.status_code == 200 and endpoint == "GET medical record":
        data = response.json()
        assert data["entries"] or data["hidden_count"] == 1
        basis = {"own_clinic": "own_clinic", "consent": "consent", "emergency": "emergency"}
        assert [entry["basis"] for entry in data["entries"]] == (
            [basis[actor_name]] if actor_name in basis else []
        )
    if endpoint in ("GET consents", "GET access log") and actor_name == "other_patient":
        assert response.json()["count"] == 0  # the other patient has no consents, no readers
    if endpoint == "POST consents" and expected == 201:
        assert Consent.objects.get(pk=response.json()["id"]).patient_id == actor.user.pk
    if endpoint == "POST consent revoke" and expected == 200:
        assert response.json()["status"] == "revoked"


def test_s1_a_revoked_consent_stops_access_on_the_very_next_request(world):
    reader = world.actors["consent"]
    url = f"/api/medical/patients/{world.patient.pk}/record"
    assert world.request("GET", url, reader).status_code == 200
    revoke = f"/api/patient/consents/{world.consent.pk}/revoke"
    assert world.request("POST", revoke, world.actors["owner"]).status_code == 200
    assert world.request("GET", url, reader).status_code == 404


def test_s1_an_unknown_patient_id_is_404_and_not_a_patient_too(world):
    reader = world.actors["own_clinic"]
    for patient_id in (10**9, world.doctor.pk, world.actors["auditor"].user.pk):
        url = f"/api/medical/patients/{patient_id}/record"
        assert world.request("GET", url, reader).status_code == 404


# --- Consents API -----------------------------------------------------------------------------


def _grant(world, body, actor="owner"):
    return world.request("POST", "/api/patient/consents", world.actors[actor], body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"grantee_clinic": 10**9}, "grantee_clinic"),
        ({"source_clinic": 10**9}, "source_clinic"),
        ({"categories": []}, "categories"),
        ({"categories": ["diagnosis", "horoscope"]}, "categories"),
        ({"valid_until": "2001-01-01"}, "valid_until"),
    ],
    ids=["unknown_grantee", "unknown_source", "no_categories", "unknown_category", "past_end"],
)
def test_grant_refuses_bad_input_and_stores_nothing(world, change, field):
    consents, events = Consent.objects.count(), head_seq()
    body = {"grantee_clinic": world.home.pk, "categories": ["diagnosis"], **change}

    response = _grant(world, body)

    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "validation_error"
    assert field in {error["field"] for error in response.json()["errors"]}
    assert Consent.objects.count() == consents
    assert head_seq() == events


def test_grant_then_list_shows_the_consent_as_active(world):
    source = ClinicFactory()
    body = {
        "grantee_clinic": world.home.pk,
        "source_clinic": source.pk,
        "categories": ["lab_result", "allergy", "allergy"],
        "valid_until": (timezone.localdate() + datetime.timedelta(days=30)).isoformat(),
    }
    response = _grant(world, body)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["grantee_clinic"]["id"] == world.home.pk
    assert data["source_clinic"]["id"] == source.pk
    assert data["categories"] == ["allergy", "lab_result"]
    assert (data["status"], data["purpose"], data["revoked_at"]) == ("active", "treatment", None)
    listed = world.request("GET", "/api/patient/consents", world.actors["owner"]).json()
    assert listed["items"][0]["id"] == data["id"]
    assert {item["status"] for item in listed["items"]} == {"active", "revoked", "expired"}


def test_revoke_twice_is_409_already_revoked(world):
    url = f"/api/patient/consents/{world.consent.pk}/revoke"
    owner = world.actors["owner"]
    assert world.request("POST", url, owner).status_code == 200
    revoked_at = Consent.objects.get(pk=world.consent.pk).revoked_at
    events = head_seq()

    again = world.request("POST", url, owner)

    assert again.status_code == 409
    assert again.json()["code"] == "already_revoked"
    assert Consent.objects.get(pk=world.consent.pk).revoked_at == revoked_at
    assert head_seq() == events


def test_someone_elses_or_an_unknown_consent_is_404(world):
    other = world.actors["other_patient"]
    for consent_id in (world.consent.pk, "7c9e6679-7425-40de-944b-e07fc1f90ae7"):
        response = world.request("POST", f"/api/patient/consents/{consent_id}/revoke", other)
        assert response.status_code == 404
    assert Consent.objects.get(pk=world.consent.pk).revoked_at is None


# --- S2: extra body fields are never applied --------------------------------------------------

EXTRAS = {
    "role": "auditor",
    "is_staff": True,
    "status": "revoked",
    "basis": "emergency",
}


def test_s2_extra_fields_in_a_grant_are_ignored(world):
    stranger_clinic = ClinicFactory()
    other = world.actors["other_patient"].user
    body = {
        "grantee_clinic": world.home.pk,
        "categories": ["diagnosis"],
        "clinic_id": stranger_clinic.pk,
        "patient": other.pk,
        "purpose": "research",
        "revoked_at": "2020-01-01T00:00:00Z",
        "valid_from": "2001-01-01",
        **EXTRAS,
    }
    response = _grant(world, body)
    assert response.status_code == 201, response.json()
    consent = Consent.objects.get(pk=response.json()["id"])
    assert consent.patient_id == world.patient.pk
    assert consent.grantee_clinic_id == world.home.pk
    assert consent.source_clinic_id is None
    assert (consent.purpose, consent.revoked_at) == ("treatment", None)
    assert consent.valid_from == timezone.localdate()
    assert consent.status == "active"
    owner = User.objects.get(pk=world.patient.pk)
    assert (owner.role, owner.is_staff) == (Role.PATIENT, False)
    assert not Consent.objects.filter(patient=other).exists()


def test_s2_extra_fields_in_an_entry_are_ignored(world):
    doctor = world.actors["own_clinic"]
    stranger_clinic = ClinicFactory()
    other = world.actors["other_patient"].user
    body = {
        "category": "note",
        "title": "Kontrolle",
        "body": "Wiedervorstellung.",
        "clinic_id": stranger_clinic.pk,
        "clinic": stranger_clinic.pk,
        "patient": other.pk,
        "author": world.actors["auditor"].user.pk,
        **EXTRAS,
    }
    url = f"/api/medical/patients/{world.patient.pk}/entries"
    response = world.request("POST", url, doctor, body)
    assert response.status_code == 201, response.json()
    assert response.json()["basis"] == "own_clinic"
    entry = RecordEntry.objects.get(pk=response.json()["id"])
    assert (entry.patient_id, entry.clinic_id, entry.author_id) == (
        world.patient.pk,
        world.home.pk,
        doctor.user.pk,
    )
    assert not RecordEntry.objects.filter(patient=other).exists()
    assert User.objects.get(pk=doctor.user.pk).role == Role.PRACTITIONER
    assert not User.objects.get(pk=doctor.user.pk).is_staff


def test_s2_extra_fields_in_an_emergency_declaration_are_ignored(world):
    reader = world.actors["no_consent"]
    other = world.actors["other_patient"].user
    body = {
        "justification": JUSTIFICATION,
        "clinic_id": world.home.pk,
        "patient": other.pk,
        "expires_at": "2099-01-01T00:00:00Z",
        **EXTRAS,
    }
    before = timezone.now()
    url = f"/api/medical/patients/{world.patient.pk}/emergency-access"
    response = world.request("POST", url, reader, body)
    assert response.status_code == 201, response.json()
    access = EmergencyAccess.objects.get(pk=response.json()["id"])
    assert (access.patient_id, access.clinic_id, access.practitioner_id) == (
        world.patient.pk,
        reader.clinic_id,
        reader.user.pk,
    )
    assert before + datetime.timedelta(hours=4) <= access.expires_at
    assert access.expires_at <= timezone.now() + datetime.timedelta(hours=4)
    assert not EmergencyAccess.objects.filter(patient=other).exists()


# --- Emergency access -------------------------------------------------------------------------


def test_emergency_needs_a_justification_of_20_characters(world):
    reader = world.actors["no_consent"]
    url = f"/api/medical/patients/{world.patient.pk}/emergency-access"
    accesses, events = EmergencyAccess.objects.count(), head_seq()
    for justification in ("", "x" * 19, " " * 5):
        response = world.request("POST", url, reader, {"justification": justification})
        assert response.status_code == 422
    assert EmergencyAccess.objects.count() == accesses
    assert head_seq() == events
    assert mail.outbox == []


def test_emergency_access_end_to_end(world, django_capture_on_commit_callbacks):
    reader = world.actors["no_consent"]
    clinic_name = ClinicFactory._meta.model.objects.get(pk=reader.clinic_id).name
    record_url = f"/api/medical/patients/{world.patient.pk}/record"
    assert world.request("GET", record_url, reader).status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        response = world.request(
            "POST",
            f"/api/medical/patients/{world.patient.pk}/emergency-access",
            reader,
            {"justification": "Zqxjustification: bewusstlos, Anamnese nicht erhebbar."},
        )
    assert response.status_code == 201, response.json()
    access_id = response.json()["id"]

    # The patient is told at once: which clinic, a link to the log; nothing else.
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [world.patient.email]
    text = message.subject + message.body
    assert clinic_name in text
    assert "/api/patient/access-log" in text
    for secret in ("Zqxjustification", "bewusstlos", "Erika", "Mustermann", "Anna", "Berger"):
        assert secret not in text
    assert MARKER_TITLE not in text

    # The whole record is readable, on the emergency basis.
    read = world.request("GET", record_url, reader)
    assert read.status_code == 200
    assert [entry["basis"] for entry in read.json()["entries"]] == ["emergency"]

    # The clinic admin of the declaring clinic reviews it; another clinic's admin does not see it.
    admin, admin_token = staff_with_token(
        role=Role.CLINIC_ADMIN, clinic=ClinicFactory._meta.model.objects.get(pk=reader.clinic_id)
    )
    review = world.client.get("/api/medical/emergency-accesses", **bearer(admin_token))
    assert review.status_code == 200
    rows = review.json()["items"]
    assert [row["id"] for row in rows] == [access_id]
    assert rows[0]["active"] is True
    assert "Zqxjustification" in rows[0]["justification"]
    home_admin = world.actors["clinic_admin"]
    others = world.request("GET", "/api/medical/emergency-accesses", home_admin).json()
    assert access_id not in {row["id"] for row in others["items"]}
    for role in ("own_clinic", "auditor", "owner"):
        refused = world.request("GET", "/api/medical/emergency-accesses", world.actors[role])
        assert refused.status_code == 403

    # The patient's access log shows the declaration with basis emergency.
    log = world.request("GET", "/api/patient/access-log", world.actors["owner"]).json()
    declared = [row for row in log["items"] if row["action"] == "emergency.declare"]
    assert {"role": "practitioner", "clinic_id": reader.clinic_id, "basis": "emergency"} in [
        {
            "role": row["actor"]["role"],
            "clinic_id": row["actor"]["clinic"]["id"],
            "basis": row["basis"],
        }
        for row in declared
    ]

    # Four hours later access has ended.
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=4, minutes=1)):
        fresh = token_for(reader.user).raw
        assert world.client.get(record_url, **bearer(fresh)).status_code == 404
        review = world.client.get("/api/medical/emergency-accesses", **bearer(token_for(admin)))
        assert review.json()["items"][0]["active"] is False


# --- Query counts -----------------------------------------------------------------------------


def _queries_for_record(world, entries: int) -> int:
    reader = world.actors["consent"]
    for number in range(entries - RecordEntry.objects.filter(patient=world.patient).count()):
        record_entry_write(
            author=world.doctor, patient=world.patient, clinic=world.home, title=f"Eintrag {number}"
        )
    url = f"/api/medical/patients/{world.patient.pk}/record"
    with CaptureQueriesContext(connection) as queries:
        response = world.request("GET", url, reader)
    assert response.status_code == 200
    assert len(response.json()["entries"]) == entries
    return len(queries)


def test_the_practitioner_record_takes_a_constant_number_of_queries(world):
    five = _queries_for_record(world, 5)
    thirty = _queries_for_record(world, 30)
    assert five == thirty, (five, thirty)
    print(f"practitioner record: {five} queries for 5 and for 30 entries")
