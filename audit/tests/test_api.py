"""The auditor's API: GET /api/audit/events (filters, pagination, audited reads) and
GET /api/audit/verify, for the auditor role only."""

import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import transaction

from accounts.models import Role
from audit import tlog
from audit.chain import canonical_json
from audit.integrator import checkpoint_create, integrate_pending, read_hashes
from audit.models import AuditAction, AuditEvent, Outcome
from audit.tests.builders import bearer, events_since, head_seq, staff_with_token
from audit.tests.helpers import append_varied
from audit.verify_export import leaf_hash

pytestmark = pytest.mark.django_db

EVENTS_URL = "/api/audit/events"
VERIFY_URL = "/api/audit/verify"
BERLIN = ZoneInfo("Europe/Berlin")
START = datetime.datetime(2021, 3, 2, 8, 0, tzinfo=datetime.UTC)  # before any real "now"


@pytest.fixture
def auditor():
    """(user, IssuedToken) of an auditor."""
    return staff_with_token(role=Role.AUDITOR)


def get(client, url, token, **params):
    return client.get(url, params, **bearer(token), HTTP_X_REQUEST_ID="auditor-request-0001")


def append(n: int) -> list[AuditEvent]:
    """Events 1..n, integrated. Tests name rows by these events' seq, never by fixed numbers:
    seq comes from a database sequence, which PostgreSQL does not restart between tests."""
    events = [append_varied(index) for index in range(1, n + 1)]
    integrate_pending()
    return events


def seqs(events: list[AuditEvent], *numbers: int) -> list[int]:
    """The seq of events number `numbers` (counted from 1, as append_varied does)."""
    return [events[number - 1].seq for number in numbers]


# --- GET /api/audit/events ----------------------------------------------------------------------


def test_the_auditor_pages_through_events_by_limit_and_offset(api_client, auditor):
    events = append(30)
    _, token = auditor

    first = get(api_client, EVENTS_URL, token.raw, action="auth.login", limit=4)
    last = get(api_client, EVENTS_URL, token.raw, action="auth.login", limit=4, offset=8)

    assert first.status_code == last.status_code == 200
    # append_varied gives auth.login to every event whose index is 1 modulo 3.
    assert first.json()["count"] == last.json()["count"] == 10
    assert [item["seq"] for item in first.json()["items"]] == seqs(events, 1, 4, 7, 10)
    assert [item["seq"] for item in last.json()["items"]] == seqs(events, 25, 28)


def test_events_come_oldest_first_with_every_field(api_client, auditor):
    events = append(30)
    _, token = auditor

    response = get(api_client, EVENTS_URL, token.raw, limit=12, offset=3)

    body = response.json()
    assert response.status_code == 200
    assert body["count"] >= 30
    assert [item["seq"] for item in body["items"]] == seqs(events, *range(4, 16))
    stored = AuditEvent.objects.get(seq=events[4].seq)
    item = body["items"][1]
    assert (item["leaf_index"], item["hash"], item["prev_hash"]) == (4, None, None)
    assert item["details"] == stored.details
    assert (item["actor_id"], item["subject_ref"], item["client_address"]) == (
        stored.actor_id,
        stored.subject_ref,
        stored.client_address,
    )
    assert datetime.datetime.fromisoformat(item["occurred_at"]) == stored.occurred_at
    # An auditor can recompute every row's leaf from what the API gives.
    for item in body["items"]:
        row = {**item, "occurred_at": datetime.datetime.fromisoformat(item["occurred_at"])}
        (stored_leaf,) = read_hashes([tlog.stored_hash_index(0, item["leaf_index"])])
        assert leaf_hash(canonical_json(row).encode()) == stored_leaf


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"actor": 0}, {"action": "x" * 65}],
    ids=["limit-0", "limit-201", "offset-negative", "actor-0", "action-too-long"],
)
def test_bad_paging_or_filter_values_are_a_422(api_client, auditor, params):
    _, token = auditor

    response = get(api_client, EVENTS_URL, token.raw, **params)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_a_time_without_offset_is_a_422_not_a_guess(api_client, auditor):
    _, token = auditor

    response = get(api_client, EVENTS_URL, token.raw, since="2026-03-02T09:00:00")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "since"
    assert not AuditEvent.objects.exists()


def test_since_and_until_select_a_time_window(api_client, auditor):
    """`since` inclusive, `until` exclusive, in any offset."""
    events = []
    with time_machine.travel(START, tick=False) as traveller:
        for hour in range(6):
            traveller.move_to(START + datetime.timedelta(hours=hour))
            events.append(append_varied(hour + 1))
    _, token = auditor

    response = get(
        api_client,
        EVENTS_URL,
        token.raw,
        since=(START + datetime.timedelta(hours=2)).astimezone(BERLIN).isoformat(),
        until=(START + datetime.timedelta(hours=4)).isoformat(),
    )

    assert response.status_code == 200
    assert [item["seq"] for item in response.json()["items"]] == seqs(events, 3, 4)
    only_since = get(
        api_client, EVENTS_URL, token.raw, since=(START + datetime.timedelta(hours=5)).isoformat()
    )
    # Row 6, and the audit.read rows of the two requests (written now, after the window).
    assert [item["seq"] for item in only_since.json()["items"]][:1] == seqs(events, 6)
    assert all(item["action"] == "audit.read" for item in only_since.json()["items"][1:]), (
        only_since.json()
    )
    only_until = get(api_client, EVENTS_URL, token.raw, until=START.isoformat())
    assert only_until.json() == {"items": [], "count": 0}


def test_action_and_actor_filters_combine(api_client, auditor):
    events = append(40)
    _, token = auditor
    expected = list(
        AuditEvent.objects.filter(actor_id=1003, action="auth.register").values_list(
            "seq", flat=True
        )
    )
    assert expected  # the filter selects something, and not everything

    by_actor = get(api_client, EVENTS_URL, token.raw, actor=1003)
    both = get(api_client, EVENTS_URL, token.raw, actor=1003, action="auth.register")

    actor_seqs = [item["seq"] for item in by_actor.json()["items"]]
    assert actor_seqs == list(
        AuditEvent.objects.filter(actor_id=1003, seq__lte=events[-1].seq).values_list(
            "seq", flat=True
        )
    )
    assert {item["actor_id"] for item in by_actor.json()["items"]} == {1003}
    assert [item["seq"] for item in both.json()["items"]] == expected
    assert both.json()["count"] == len(expected)
    nothing = get(api_client, EVENTS_URL, token.raw, action="no.such_action")
    assert nothing.json() == {"items": [], "count": 0}


def test_reading_events_is_itself_audited(api_client, auditor):
    events = append(3)
    user, token = auditor

    response = get(api_client, EVENTS_URL, token.raw, action="auth.login", actor=1001)

    (read,) = events_since(events[-1].seq)
    assert (read.action, read.outcome, read.actor_id, read.actor_role) == (
        AuditAction.AUDIT_READ,
        Outcome.SUCCESS,
        user.pk,
        Role.AUDITOR,
    )
    assert read.details == {"action": "auth.login", "actor": "1001"}
    assert (read.client_address, read.request_id) == ("127.0.0.1", "auditor-request-0001")
    assert response["X-Request-ID"] == "auditor-request-0001"


# --- Who may read ---------------------------------------------------------------------------


@pytest.fixture(params=[Role.PATIENT, Role.PRACTITIONER, Role.CLINIC_ADMIN])
def not_an_auditor(request, make_patient):
    if request.param == Role.PATIENT:
        return make_patient().raw
    return staff_with_token(role=request.param)[1].raw


@pytest.mark.parametrize("url", [EVENTS_URL, VERIFY_URL])
def test_only_auditors_read_the_log(api_client, not_an_auditor, url):
    before = head_seq()

    response = get(api_client, url, not_an_auditor)

    assert response.status_code == 403
    assert response.json()["code"] == "auditors_only"
    assert head_seq() == before  # nothing read, nothing verified


@pytest.mark.parametrize("url", [EVENTS_URL, VERIFY_URL])
def test_anonymous_clients_are_asked_to_authenticate(api_client, url):
    events = append(2)

    response = api_client.get(url)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert head_seq() == events[-1].seq


# --- GET /api/audit/verify ------------------------------------------------------------------------


def test_verify_answers_intact_with_the_head_and_is_audited(api_client, auditor):
    events = append(12)
    checkpoint = checkpoint_create()
    user, token = auditor

    response = get(api_client, VERIFY_URL, token.raw)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "ok": True,
        "events_checked": 12,
        "head_seq": events[-1].seq,
        "head_hash": body["head_hash"],
        "first_broken_seq": None,
        "first_broken_leaf": None,
        "checkpoints_checked": 1,  # the integrator signed the first batch; nothing new since
        "tree_size": 12,
        "root_hash": checkpoint.root_hash,
        "staged_events": 0,
        "problem": "",
    }
    (run,) = events_since(events[-1].seq)
    assert (run.action, run.outcome, run.actor_id, run.actor_role, run.request_id) == (
        AuditAction.AUDIT_VERIFY,
        Outcome.SUCCESS,
        user.pk,
        Role.AUDITOR,
        "auditor-request-0001",
    )
    assert run.client_address == "127.0.0.1"
    assert run.details["events_checked"] == 12


def test_verify_names_the_first_broken_row_after_tampering(api_client, auditor, triggers_dropped):
    events = append(12)
    changed = events[4].seq
    _, token = auditor
    with transaction.atomic():
        AuditEvent.objects.filter(seq=changed).update(outcome=Outcome.SUCCESS, details={})

    response = get(api_client, VERIFY_URL, token.raw)

    body = response.json()
    assert response.status_code == 200
    assert (body["ok"], body["first_broken_seq"], body["events_checked"]) == (False, changed, 4)
    assert (body["first_broken_leaf"], body["root_hash"]) == (4, None)
    assert body["problem"] == f"event #{changed} (leaf 4): its content does not match the tree"
    run = AuditEvent.objects.order_by("-seq").first()
    assert (run.action, run.outcome) == (AuditAction.AUDIT_VERIFY, Outcome.FAILURE)


def test_verify_finds_a_cut_tail_through_the_api(api_client, auditor, triggers_dropped):
    events = append(12)
    checkpoint_create()
    _, token = auditor
    with transaction.atomic():
        AuditEvent.objects.filter(seq__gte=events[9].seq).delete()

    body = get(api_client, VERIFY_URL, token.raw).json()

    assert (body["ok"], body["first_broken_leaf"], body["events_checked"]) == (False, 9, 9)
    assert "tail was cut" in body["problem"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("until", "0001-01-01T00:00:00+01:00"), ("since", "9999-12-31T23:59:59-01:00")],
)
def test_a_time_with_no_utc_equivalent_is_a_422_not_a_500(api_client, auditor, field, value):
    # Found by schemathesis: the UTC conversion for the query overflowed into a 500.
    _, token = auditor

    response = get(api_client, EVENTS_URL, token.raw, **{field: value})

    assert response.status_code == 422, response.content[:300]
    assert response.json()["errors"][0]["field"] == field
