"""Request context: every request has an id, and audit rows written during it carry the id and
the client address."""

import re

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from audit import context
from audit.middleware import RequestContextMiddleware
from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import chain_verify, event_append

pytestmark = pytest.mark.django_db

HEALTH = "/api/health"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def test_a_request_gets_a_request_id(api_client):
    first = api_client.get(HEALTH)
    second = api_client.get(HEALTH)

    assert GENERATED_ID.match(first["X-Request-ID"])
    assert GENERATED_ID.match(second["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    "incoming", ["abcdef12", "3f2c9a1e-7b4d-4e8a-9c1f-2d5e6a7b8c9d", "lb.edge-01_req.42", "a" * 64]
)
def test_a_valid_incoming_request_id_is_echoed(api_client, incoming):
    response = api_client.get(HEALTH, headers={"X-Request-ID": incoming})

    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "",
        "short",
        "has spaces in it",
        "a" * 65,
        "x" * 200,
        "../../etc/passwd",
        "abc;drop table",
        "<script>alert(1)</script>",
        "ünïcödé-request",
        "trailing-newline\n",
    ],
)
def test_an_invalid_incoming_request_id_is_replaced(api_client, incoming):
    response = api_client.get(HEALTH, headers={"X-Request-ID": incoming})

    assert response["X-Request-ID"] != incoming
    assert GENERATED_ID.match(response["X-Request-ID"])


def test_the_context_is_cleared_after_the_request(api_client):
    api_client.get(HEALTH, headers={"X-Request-ID": "kept-request-0001"})

    assert context.request_id.get() == ""
    assert context.client_address.get() is None


def test_an_event_appended_with_the_context_set_carries_it():
    id_token = context.request_id.set("req-0123456789")
    address_token = context.client_address.set("2001:db8::7")
    try:
        inside = event_append(action=AuditAction.AUTH_LOGIN, outcome=Outcome.SUCCESS)
    finally:
        context.request_id.reset(id_token)
        context.client_address.reset(address_token)
    outside = event_append(action=AuditAction.AUTH_LOGOUT, outcome=Outcome.SUCCESS)

    stored_inside = AuditEvent.objects.get(seq=inside.seq)
    stored_outside = AuditEvent.objects.get(seq=outside.seq)
    assert (stored_inside.request_id, stored_inside.client_address) == (
        "req-0123456789",
        "2001:db8::7",
    )
    assert (stored_outside.request_id, stored_outside.client_address) == ("", None)
    assert chain_verify().ok


def _appending_view(request):
    event = event_append(action=AuditAction.AUTH_LOGIN, outcome=Outcome.SUCCESS)
    return HttpResponse(str(event.seq))


@pytest.mark.parametrize(
    ("remote_addr", "stored_address"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::9", "2001:db8::9"),
        # Not an address (a Unix socket, a misconfigured proxy): recorded as unknown rather than
        # refused by PostgreSQL's inet column, which would fail the audited action itself.
        ("unknown", None),
        ("", None),
    ],
)
def test_events_written_during_a_request_carry_its_id_and_address(remote_addr, stored_address):
    middleware = RequestContextMiddleware(_appending_view)
    request = RequestFactory().get(
        "/anything", headers={"X-Request-ID": "edge-request-0042"}, REMOTE_ADDR=remote_addr
    )

    response = middleware(request)

    event = AuditEvent.objects.get(seq=int(response.content))
    assert response["X-Request-ID"] == "edge-request-0042"
    assert event.request_id == "edge-request-0042"
    assert event.client_address == stored_address
    assert chain_verify().ok
