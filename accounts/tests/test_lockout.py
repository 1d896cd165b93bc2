"""Lockout (SECURITY.md P2): failed logins lock the account (from one address or from many) after
at most 10 failures within the cool-off; while locked the right password is refused too; unknown
accounts answer alike; a shared address alone locks nobody; locked attempts are audited."""

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import StaffFactory
from audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"


def api_login(email, password, address="203.0.113.5"):
    client = Client(REMOTE_ADDR=address)
    return client.post(
        "/api/auth/login",
        data=json.dumps({"email": email, "password": password}),
        content_type="application/json",
    )


def fail(email, times, addresses=("203.0.113.5",)):
    for number in range(times):
        address = addresses[number % len(addresses)]
        response = api_login(email, "falsches-Passwort-1", address)
        assert response.status_code in (401, 429)
    return response


@pytest.fixture
def patient(make_patient):
    return make_patient(email="erika@example.com").user


def test_nine_failures_do_not_lock_and_the_right_password_then_works(patient):
    fail("erika@example.com", 9)

    assert api_login("erika@example.com", PASSWORD).status_code == 200
    # The success reset the count: nine more failures still do not lock.
    fail("erika@example.com", 9)
    assert api_login("erika@example.com", PASSWORD).status_code == 200


def test_ten_failures_from_one_address_lock_and_the_right_password_is_refused(patient):
    last = fail("erika@example.com", 10)

    assert last.status_code == 429
    locked = api_login("erika@example.com", PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["code"] == "account_locked"
    assert "token" not in locked.json()


def test_failures_from_many_addresses_lock_the_account_everywhere(patient):
    addresses = tuple(f"198.51.100.{number}" for number in range(1, 11))
    fail("erika@example.com", 10, addresses)

    assert api_login("erika@example.com", PASSWORD, "192.0.2.200").status_code == 429


def test_the_account_is_counted_whatever_the_spelling_of_its_address(patient):
    for number in range(10):
        api_login("Erika@Example.COM " if number % 2 else "erika@example.com", "falsch-falsch-1")

    assert api_login("erika@example.com", PASSWORD).status_code == 429


def test_one_address_failing_for_many_accounts_locks_none_of_them(make_patient):
    shared = "203.0.113.77"  # a clinic's or a carrier's shared address
    patients = [make_patient(email=f"p{number}@example.com").user for number in range(4)]
    for number in range(12):
        api_login(f"guess{number}@example.com", "falsch-falsch-1", shared)

    for user in patients:
        assert api_login(user.email, PASSWORD, shared).status_code == 200


def test_a_locked_unknown_account_answers_exactly_like_a_locked_known_one(patient):
    fail("erika@example.com", 10)
    fail("niemand@example.com", 10)

    known = api_login("erika@example.com", PASSWORD)
    unknown = api_login("niemand@example.com", PASSWORD)

    assert known.status_code == unknown.status_code == 429
    assert known.json() == unknown.json()


def test_failures_before_the_lock_answer_alike_for_known_and_unknown_accounts(patient):
    known = api_login("erika@example.com", "falsch-falsch-1")
    unknown = api_login("niemand@example.com", "falsch-falsch-1")

    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()


def test_the_lock_ends_after_the_cool_off(settings, patient):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        fail("erika@example.com", 10)
    with time_machine.travel(start + timedelta(minutes=14), tick=False):
        assert api_login("erika@example.com", PASSWORD).status_code == 429
    # Each attempt during the lock restarts the cool-off (AXES_RESET_COOL_OFF_ON_FAILURE...).
    with time_machine.travel(start + timedelta(minutes=30), tick=False):
        assert api_login("erika@example.com", PASSWORD).status_code == 200


def test_locked_attempts_are_audited_without_the_address_tried(patient):
    fail("erika@example.com", 10)
    api_login("erika@example.com", PASSWORD)

    rows = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED)
    reasons = [row.details["reason"] for row in rows.order_by("seq")]
    assert reasons == ["invalid_credentials"] * 9 + ["account_locked"] * 2
    locked = rows.filter(details__reason="account_locked").last()
    assert locked.object_id == str(patient.pk)
    assert "erika" not in json.dumps(locked.details)


def test_the_html_login_shares_the_lock():
    staff = StaffFactory(is_staff=True, email="praxis.admin@example.com")
    fail("praxis.admin@example.com", 10)
    browser = Client(REMOTE_ADDR="203.0.113.5")

    response = browser.post("/admin/login/", {"username": staff.email, "password": PASSWORD})

    assert response.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_the_unlock_command_lets_the_account_in_again(patient):
    fail("erika@example.com", 10)
    assert api_login("erika@example.com", PASSWORD).status_code == 429

    call_command("axes_reset_username", "erika@example.com", stdout=StringIO())

    assert api_login("erika@example.com", PASSWORD).status_code == 200
