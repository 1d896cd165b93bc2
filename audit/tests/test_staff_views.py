"""The auditor's pages: the event list with filters and chain verification
(audit/staff_views.py)."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, AuditEvent, Outcome
from audit.tests.builders import events_since, head_seq
from audit.tests.helpers import append_varied
from patterm.tests.staff_world import MARKERS, status_table

pytestmark = pytest.mark.django_db

AUDITORS_ONLY = (302, 403, 403, 403, 403, 403, 200)


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table({"events": AUDITORS_ONLY, "verify": AUDITORS_ONLY}),
)
def test_who_opens_which_page(staff_world, page, role, expected):
    response = staff_world.client_for(role).get(reverse(f"audit_staff:{page}"))

    assert response.status_code == expected
    if role == "anonymous":
        assert response.url.startswith(reverse("accounts:login"))


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table({"verify_run": (302, 403, 403, 403, 403, 403, 302)}),
)
def test_who_runs_a_verification(staff_world, page, role, expected):
    started = head_seq()

    response = staff_world.client_for(role).post(reverse(f"audit_staff:{page}"))

    assert response.status_code == expected
    runs = [e for e in events_since(started) if e.action == AuditAction.AUDIT_VERIFY]
    assert len(runs) == (1 if role == "auditor" else 0)


def test_the_event_list_shows_events_without_personal_data_and_the_read_is_audited(staff_world):
    auditor = staff_world.users["auditor"]
    started = head_seq()

    response = staff_world.client_for("auditor").get(reverse("audit_staff:events"))

    assert response.status_code == 200
    assert "record.write" in response.text
    for marker in MARKERS:
        assert marker not in response.text
    (read,) = [e for e in events_since(started) if e.action == AuditAction.AUDIT_READ]
    assert (read.actor_id, read.details) == (auditor.pk, {})


def test_filters_by_action_actor_and_time_are_the_apis(staff_world):
    doctor = staff_world.users["practitioner"]
    since = timezone.localtime() - datetime.timedelta(hours=1)
    started = head_seq()

    response = staff_world.client_for("auditor").get(
        reverse("audit_staff:events"),
        {
            "action": AuditAction.RECORD_WRITE,
            "actor": doctor.pk,
            "since": since.strftime("%Y-%m-%dT%H:%M"),
        },
    )

    listed = list(response.context["page_obj"].object_list)
    expected = AuditEvent.objects.filter(action=AuditAction.RECORD_WRITE, actor_id=doctor.pk)
    assert [e.seq for e in listed] == list(expected.values_list("seq", flat=True)) != []
    (read,) = [e for e in events_since(started) if e.action == AuditAction.AUDIT_READ]
    assert read.details["action"] == AuditAction.RECORD_WRITE
    assert read.details["actor"] == str(doctor.pk)
    assert read.details["since"].startswith(since.strftime("%Y-%m-%d"))


def test_an_invalid_filter_is_shown_next_to_the_field_and_reads_nothing(staff_world):
    started = head_seq()

    response = staff_world.client_for("auditor").get(
        reverse("audit_staff:events"), {"since": "gestern", "actor": "x"}
    )

    assert response.status_code == 200
    assert {"since", "actor"} <= set(response.context["form"].errors)
    assert 'value="gestern"' in response.text
    assert response.context["page_obj"] is None
    assert not [e for e in events_since(started) if e.action == AuditAction.AUDIT_READ]


def _events_queries(client, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("audit_staff:events"), params).status_code == 200
    return len(queries)


def test_the_event_lists_queries_do_not_grow_with_the_log(staff_world):
    client = staff_world.client_for("auditor")
    few = _events_queries(client, page=1)
    for index in range(1, 120):
        append_varied(index)

    assert _events_queries(client, page=1) == few
    assert _events_queries(client, page=3) == few


def test_a_verification_shows_its_result(staff_world):
    client = staff_world.client_for("auditor")
    assert "verify-result" not in client.get(reverse("audit_staff:verify")).text

    response = client.post(reverse("audit_staff:verify_run"))
    page = client.get(response.url)

    assert page.context["result"]["ok"] is True
    assert "alert--success" in page.text
    event = AuditEvent.objects.filter(action=AuditAction.AUDIT_VERIFY).latest("seq")
    assert event.outcome == Outcome.SUCCESS
    assert str(page.context["result"]["events_checked"]) in page.text
