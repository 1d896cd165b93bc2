"""Each entry of the patient's access log names its leaf in the audit log's Merkle tree and
offers its inclusion proof as a download: on the page (session) and in the API (token), for the
patient's own entries and for a relative's, to their holder; anyone else's entry is a 404."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from audit import signing
from audit.integrator import checkpoint_create, integrate_pending
from audit.models import AuditEvent
from audit.tests.builders import bearer, staff_with_token, token_for
from audit.verify_export import inclusion_verify
from booking.tests.portal import ROLES, expected, portal_world
from vault import relatives
from vault.services import practitioner_record_read
from vault.tests.test_relatives_views import years_ago

pytestmark = pytest.mark.django_db

ACCESS_LOG = reverse("consent:access_log")


@pytest.fixture
def world(make_patient):
    return portal_world(make_patient)


def _read(world) -> AuditEvent:
    """A practitioner reads the patient's record: the access log's newest entry."""
    practitioner_record_read(actor=world.doctor, patient_id=world.patient.pk)
    return AuditEvent.objects.filter(action="record.read").latest("seq")


def _proof_url(event: AuditEvent) -> str:
    return reverse("consent:access_log_proof", kwargs={"seq": event.seq})


def _rows_by_seq(response) -> dict:
    return {row["seq"]: row for row in response.context["rows"]}


def test_a_staged_entry_is_being_added_and_offers_no_download(world):
    event = _read(world)  # the test transaction never commits: the event stays staged

    response = world.client_for("patient").get(ACCESS_LOG)

    row = _rows_by_seq(response)[event.seq]
    assert (row["leaf_index"], row["signed"]) == (None, False)
    assert "wird eingetragen" in response.text
    assert _proof_url(event) not in response.text
    download = world.client_for("patient").get(_proof_url(event))
    assert download.status_code == 422
    assert "noch in keinem signierten" in download.text


def test_an_integrated_entry_not_yet_signed_says_so(world):
    checkpoint_create()
    event = _read(world)
    integrate_pending()  # a leaf now, but the latest checkpoint is older

    response = world.client_for("patient").get(ACCESS_LOG)

    event.refresh_from_db()
    row = _rows_by_seq(response)[event.seq]
    assert row["leaf_index"] == event.leaf_index is not None
    assert row["signed"] is False
    assert f"Eintrag {event.leaf_index}, noch nicht signiert" in response.text
    assert _proof_url(event) not in response.text


def test_a_signed_entry_shows_its_leaf_and_its_proof_downloads_and_verifies(world):
    event = _read(world)
    checkpoint_create()
    event.refresh_from_db()

    page = world.client_for("patient").get(ACCESS_LOG)
    english = Client(HTTP_ACCEPT_LANGUAGE="en")
    english.force_login(world.patient)
    in_english = english.get(ACCESS_LOG).text

    assert f"Eintrag {event.leaf_index}" in page.text
    assert f'href="{_proof_url(event)}" download' in page.text
    assert "Nachweis herunterladen" in page.text
    assert "Download proof" in in_english and f"entry {event.leaf_index}" in in_english
    download = world.client_for("patient").get(_proof_url(event))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert download["Content-Disposition"] == (
        f'attachment; filename="patterm-proof-{event.seq}.json"'
    )
    proof = json.loads(download.content)
    assert proof["leaf_index"] == event.leaf_index
    assert json.loads(proof["leaf"])["seq"] == event.seq
    # The offline verifier (what an auditor runs) accepts it with the published keys only.
    assert inclusion_verify(proof, signing.note_verifiers(proof["verifier_keys"])).startswith(
        f"INCLUDED: leaf {event.leaf_index} "
    )


@pytest.mark.parametrize("role", ROLES)
def test_the_download_answers_each_role_as_expected(world, role):
    event = _read(world)
    checkpoint_create()

    response = world.client_for(role).get(_proof_url(event))

    table = {"anonymous": 302, "patient": 200, "other_patient": 404, "staff": 403}
    assert response.status_code == expected(table, role), role
    if role != "patient":
        assert b"leaf" not in response.content


@pytest.mark.parametrize("seq", ["0", "99999999", "9223372036854775808", "99999999999999999999"])
def test_an_unknown_or_oversized_entry_is_the_404_page(world, seq):
    response = world.client_for("patient").get(f"/access-log/{seq}/proof/")
    assert response.status_code == 404


def test_the_page_keeps_its_queries_with_more_signed_rows(world, django_assert_max_num_queries):
    _read(world)
    checkpoint_create()
    client = world.client_for("patient")
    with django_assert_max_num_queries(12) as few:
        client.get(ACCESS_LOG)
    for _ in range(25):
        _read(world)
    checkpoint_create()
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(ACCESS_LOG)
    assert sum(row["signed"] for row in response.context["rows"]) >= 25


def test_the_api_rows_carry_leaf_signed_and_the_proof_path(world):
    staged = _read(world)
    token = token_for(world.patient)

    rows = world.client_for("anonymous").get("/api/patient/access-log", **bearer(token))

    row = next(item for item in rows.json()["items"] if item["seq"] == staged.seq)
    assert (row["leaf_index"], row["signed"]) == (None, False)
    assert row["proof"] == f"/api/audit/access-log/{staged.seq}/proof"
    checkpoint_create()
    staged.refresh_from_db()
    again = world.client_for("anonymous").get("/api/patient/access-log", **bearer(token))
    row = next(item for item in again.json()["items"] if item["seq"] == staged.seq)
    assert (row["leaf_index"], row["signed"]) == (staged.leaf_index, True)
    proof = world.client_for("anonymous").get(row["proof"], **bearer(token))
    assert proof.status_code == 200 and proof.json()["leaf_index"] == staged.leaf_index


# --- A relative's access log, for their holder ------------------------------------------------


@pytest.fixture
def family(make_patient):
    holder = make_patient(email="mutter@example.com").user
    stranger = make_patient(email="fremd@example.com").user
    child = relatives.relative_add(
        holder=holder, first_name="Zqxkind", last_name="Muster", date_of_birth=years_ago(7)
    )
    relatives.relative_record_read(holder=holder, relative_id=child.id)  # by the holder
    checkpoint_create()
    event = AuditEvent.objects.filter(action="record.read").latest("seq")
    return holder, stranger, child, event


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_holder_downloads_the_proof_of_a_relatives_entry(family):
    holder, stranger, child, event = family
    page_url = reverse("consent:relative_access_log", kwargs={"relative_id": child.id})
    proof_url = reverse(
        "consent:relative_access_log_proof", kwargs={"relative_id": child.id, "seq": event.seq}
    )

    page = _browser(holder).get(page_url)
    download = _browser(holder).get(proof_url)

    assert f'href="{proof_url}" download' in page.text
    assert download.status_code == 200
    assert json.loads(json.loads(download.content)["leaf"])["seq"] == event.seq
    # Not the holder's own entry, and not the stranger's relative.
    assert _browser(holder).get(_proof_url(event)).status_code == 404
    assert _browser(stranger).get(proof_url).status_code == 404
    assert _browser(child.user).get(proof_url).status_code == 404
    staff, _ = staff_with_token(role=Role.PRACTITIONER)
    assert _browser(staff).get(proof_url).status_code == 403
    assert Client().get(proof_url).status_code == 302  # to the login


def test_the_relatives_api_rows_point_to_the_relatives_proof(family):
    holder, stranger, child, event = family
    client = Client()
    rows = client.get(f"/api/relatives/{child.id}/access-log", **bearer(token_for(holder)))
    row = next(item for item in rows.json()["items"] if item["seq"] == event.seq)
    assert row["proof"] == f"/api/relatives/{child.id}/access-log/{event.seq}/proof"

    proof = client.get(row["proof"], **bearer(token_for(holder)))
    refused = client.get(row["proof"], **bearer(token_for(stranger)))
    own = client.get(f"/api/audit/access-log/{event.seq}/proof", **bearer(token_for(holder)))

    assert proof.status_code == 200 and proof.json()["leaf_index"] == event.leaf_index
    assert refused.status_code == 404
    assert own.status_code == 404
    staff = client.get(row["proof"], **bearer(staff_with_token(role=Role.PRACTITIONER)[1]))
    assert staff.status_code == 403
