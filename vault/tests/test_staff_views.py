"""The staff pages of the vault: a patient's record for a practitioner, writing an entry,
emergency access and its banner, and the clinic admin's review (vault/staff_views.py)."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, Outcome
from audit.tests.builders import bearer, events_since, head_seq, token_for
from consent.services import consent_grant
from patterm.tests.staff_world import (
    ENTRY_BODY,
    ENTRY_TITLE,
    JUSTIFICATION,
    status_table,
)
from vault.models import RecordEntry
from vault.services import emergency_access_declare

pytestmark = pytest.mark.django_db

PRACTITIONERS_ONLY = (302, 403, 200, 200, 403, 403, 403)


def _url(world, page: str) -> str:
    if page in ("record", "emergency_access", "entry_write"):
        return reverse(f"vault_staff:{page}", args=[world.patient.pk])
    return reverse(f"vault_staff:{page}")


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table(
        {
            "patient_lookup": PRACTITIONERS_ONLY,
            "record": (302, 403, 200, 404, 403, 403, 403),
            "emergency_access": PRACTITIONERS_ONLY,
            "emergency_review": (302, 403, 403, 403, 200, 200, 403),
        }
    ),
)
def test_who_opens_which_page(staff_world, page, role, expected):
    response = staff_world.client_for(role).get(_url(staff_world, page))

    assert response.status_code == expected
    if role == "anonymous":
        assert response.url.startswith(reverse("accounts:login"))
    if expected in (403, 404):
        assert ENTRY_TITLE not in response.text
        assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table({"entry_write": (302, 403, 302, 404, 403, 403, 403)}),
)
def test_who_writes_an_entry(staff_world, page, role, expected):
    before = RecordEntry.objects.count()

    response = staff_world.client_for(role).post(
        _url(staff_world, page), {"category": "note", "title": "Kontrolle", "body": "Gut."}
    )

    assert response.status_code == expected
    written = role == "practitioner"
    assert RecordEntry.objects.count() - before == (1 if written else 0)


def test_the_record_shows_each_entrys_basis_and_is_audited_like_the_api(staff_world, client):
    doctor = staff_world.users["practitioner"]
    url = reverse("vault_staff:record", args=[staff_world.patient.pk])
    started = head_seq()

    response = staff_world.client_for("practitioner").get(url)

    assert ENTRY_TITLE in response.text and ENTRY_BODY in response.text
    assert [entry.basis for entry in response.context["record"].entries] == ["own_clinic"]
    (page_read,) = [e for e in events_since(started) if e.action == AuditAction.RECORD_READ]
    api_started = head_seq()
    api = client.get(
        f"/api/medical/patients/{staff_world.patient.pk}/record", **bearer(token_for(doctor))
    )
    assert api.status_code == 200
    (api_read,) = [e for e in events_since(api_started) if e.action == AuditAction.RECORD_READ]
    fields = ("actor_id", "outcome", "object_type", "subject_ref", "clinic_id", "purpose")
    assert [getattr(page_read, f) for f in fields] == [getattr(api_read, f) for f in fields]
    assert (
        page_read.details
        == api_read.details
        == {
            "bases": ["own_clinic"],
            "entries": 1,
            "hidden": 0,
        }
    )


def test_the_record_page_costs_nine_statements(staff_world, django_assert_num_queries):
    """Session, user and browser session, the patient; for the read (decision 0023): the
    practitioner's clinics (acting clinic first, with care and emergency access) in one, the
    consents, the entries with the record's size, the audit row; the emergency banner."""
    client = staff_world.client_for("practitioner")
    url = reverse("vault_staff:record", args=[staff_world.patient.pk])
    client.get(url)

    with django_assert_num_queries(9):
        response = client.get(url)

    assert response.status_code == 200 and ENTRY_TITLE in response.text
    assert response.context["record"].hidden_count == 0


def test_what_consent_does_not_cover_is_counted_as_hidden(staff_world):
    consent_grant(
        patient=staff_world.patient,
        grantee_clinic_id=staff_world.south.pk,
        source_clinic_id=None,
        categories=["allergy"],
        valid_until=None,
    )
    url = reverse("vault_staff:record", args=[staff_world.patient.pk])

    response = staff_world.client_for("practitioner_other").get(url)

    assert response.status_code == 200
    assert response.context["record"].hidden_count == 1
    assert ENTRY_TITLE not in response.text
    assert "alert--warning" in response.text


def test_a_clinic_admin_asking_for_a_record_is_refused_and_audited(staff_world):
    started = head_seq()
    url = reverse("vault_staff:record", args=[staff_world.patient.pk])

    response = staff_world.client_for("clinic_admin").get(url)

    assert response.status_code == 403
    (event,) = [e for e in events_since(started) if e.action == AuditAction.RECORD_READ]
    assert (event.outcome, event.details["reason"]) == (Outcome.DENIED, "role")


def test_no_basis_is_a_404_that_offers_emergency_access(staff_world):
    url = reverse("vault_staff:record", args=[staff_world.patient.pk])

    response = staff_world.client_for("practitioner_other").get(url)

    assert response.status_code == 404
    assert reverse("vault_staff:emergency_access", args=[staff_world.patient.pk]) in response.text
    unknown = staff_world.client_for("practitioner_other").get(
        reverse("vault_staff:record", args=[999_999])
    )
    assert unknown.status_code == 404
    assert unknown.context["patient_id"] == 999_999


def test_a_written_entry_appears_with_a_message(staff_world):
    client = staff_world.client_for("practitioner")
    url = reverse("vault_staff:entry_write", args=[staff_world.patient.pk])

    response = client.post(
        url, {"category": "medication", "title": "Ramipril 5 mg", "body": "1-0-0"}
    )

    assert response.url == reverse("vault_staff:record", args=[staff_world.patient.pk])
    page = client.get(response.url)
    assert "Ramipril 5 mg" in page.text
    assert "alert--success" in page.text
    entry = RecordEntry.objects.get(category="medication")
    assert (entry.author, entry.clinic) == (staff_world.users["practitioner"], staff_world.north)


def test_an_entry_without_title_keeps_what_was_typed(staff_world):
    url = reverse("vault_staff:entry_write", args=[staff_world.patient.pk])

    response = staff_world.client_for("practitioner").post(
        url, {"category": "note", "title": "", "body": "Zqxentwurf bleibt stehen"}
    )

    assert response.status_code == 422
    assert "title" in response.context["form"].errors
    assert "Zqxentwurf bleibt stehen" in response.text
    assert 'id="id_title_error"' in response.text


def test_a_short_justification_is_refused_next_to_the_field(staff_world):
    url = reverse("vault_staff:emergency_access", args=[staff_world.patient.pk])

    response = staff_world.client_for("practitioner_other").post(url, {"justification": "zu kurz"})

    assert response.status_code == 200
    assert "justification" in response.context["form"].errors
    assert "zu kurz" in response.text
    assert not staff_world.patient.emergency_accesses_to.exists()


def test_the_service_refuses_a_short_justification_too(staff_world):
    from patterm.errors import InvalidInput

    with pytest.raises(InvalidInput):
        emergency_access_declare(
            actor=staff_world.users["practitioner_other"],
            patient_id=staff_world.patient.pk,
            justification="   zu kurz, auch mit Leerzeichen   ".strip()[:19],
        )


def test_emergency_access_opens_the_record_and_its_end_shows_on_every_staff_page(
    staff_world, django_capture_on_commit_callbacks, settings
):
    # The test jumps past the access's 4 hours; the browser session must not time out first.
    settings.PATTERM_SESSION_IDLE_TIMEOUT = datetime.timedelta(hours=5)
    client = staff_world.client_for("practitioner_other")
    url = reverse("vault_staff:emergency_access", args=[staff_world.patient.pk])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"justification": JUSTIFICATION})

    assert response.url == reverse("vault_staff:record", args=[staff_world.patient.pk])
    access = staff_world.patient.emergency_accesses_to.get()
    record = client.get(response.url)
    assert [entry.basis for entry in record.context["record"].entries] == ["emergency"]
    assert ENTRY_TITLE in record.text
    end = timezone.localtime(access.expires_at).strftime("%H:%M")
    for page in (response.url, reverse("booking_staff:schedule")):
        text = client.get(page).text
        assert "emergency-banner" in text and end in text
    assert [message.to for message in mail.outbox] == [[staff_world.patient.email]]
    with time_machine.travel(access.expires_at + datetime.timedelta(minutes=1)):
        assert "emergency-banner" not in client.get(reverse("booking_staff:schedule")).text
        assert client.get(response.url).status_code == 404


def test_the_review_lists_the_clinics_accesses_with_justification(staff_world):
    north = staff_world.client_for("clinic_admin").get(reverse("vault_staff:emergency_review"))
    south = staff_world.client_for("clinic_admin_other").get(
        reverse("vault_staff:emergency_review")
    )

    assert JUSTIFICATION in north.text
    assert str(staff_world.patient_q.pk) in north.text
    assert JUSTIFICATION not in south.text
    assert 'class="empty"' in south.text


def _review_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("vault_staff:emergency_review")).status_code == 200
    return len(queries)


def test_the_reviews_queries_do_not_grow_with_the_accesses(staff_world, make_patient):
    client = staff_world.client_for("clinic_admin")
    doctor = staff_world.users["practitioner"]
    one = _review_queries(client)
    for number in range(4):
        patient = make_patient(email=f"notfall{number}@example.com").user
        emergency_access_declare(actor=doctor, patient_id=patient.pk, justification=JUSTIFICATION)

    assert _review_queries(client) == one


def test_the_lookup_goes_to_the_record(staff_world):
    response = staff_world.client_for("practitioner").get(
        reverse("vault_staff:patient_lookup"), {"patient": staff_world.patient.pk}
    )

    assert response.url == reverse("vault_staff:record", args=[staff_world.patient.pk])


def test_no_audit_row_holds_the_justification_or_entry(staff_world):
    staff_world.client_for("clinic_admin").get(reverse("vault_staff:emergency_review"))
    staff_world.client_for("practitioner").get(
        reverse("vault_staff:record", args=[staff_world.patient.pk])
    )

    stored = " ".join(str(row) for row in AuditEvent.objects.values_list())
    assert JUSTIFICATION not in stored and ENTRY_TITLE not in stored


def test_a_wrong_icd_code_is_refused_next_to_the_field_and_a_right_one_shown(staff_world):
    client = staff_world.client_for("practitioner")
    url = reverse("vault_staff:entry_write", args=[staff_world.patient.pk])
    entry = {"category": "diagnosis", "title": "Zqxhypertonie", "body": "RR 150/95"}
    written = RecordEntry.objects.filter(category="diagnosis")
    before = written.count()

    wrong = client.post(url, {**entry, "code": "I1090"})

    assert wrong.status_code == 422
    assert "code" in wrong.context["form"].errors
    assert 'id="id_code_error"' in wrong.text
    assert written.count() == before

    right = client.post(url, {**entry, "code": "I10.90"})

    assert [e.code for e in written if e.title == "Zqxhypertonie"] == ["I10.90"]
    assert "I10.90" in client.get(right.url).text
