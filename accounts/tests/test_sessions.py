"""The session registry (SECURITY.md P3, P4): browser sessions and API tokens listed together,
ended one by one or all at once, and ended everywhere when the password, the account, the role or
a membership changes; browser sessions time out like tokens."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts.models import BrowserSession, Membership, Role
from accounts.services import ClientInfo, login, token_issue
from accounts.sessions import sessions_of
from accounts.tests.factories import StaffFactory
from audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"


def bearer(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def me(client, raw):
    return client.get("/api/me", **bearer(raw))


def browser_for(user, user_agent="Firefox auf Linux"):
    """A browser signed in through Django's login (the registry fills on user_logged_in)."""
    browser = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR="198.51.100.7")
    browser.force_login(user)
    return browser


def signed_in(browser) -> bool:
    """Whether the browser's session still belongs to a signed-in user."""
    response = browser.get("/")
    return response.wsgi_request.user.is_authenticated


def post(client, url, body=None, raw=None):
    return client.post(
        url, data=json.dumps(body or {}), content_type="application/json", **bearer(raw)
    )


# --- the registry -------------------------------------------------------------------------------


def admin_login(user, user_agent="Firefox auf Linux"):
    """A real sign-in through a Django login view (the admin's, for `is_staff` accounts)."""
    browser = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR="198.51.100.7")
    response = browser.post("/admin/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return browser


def test_a_browser_login_is_registered_with_device_and_address():
    user = StaffFactory(is_staff=True)

    browser = admin_login(user)

    entry = BrowserSession.objects.get(user=user)
    assert entry.session_id == browser.session.session_key
    assert entry.user_agent == "Firefox auf Linux"
    assert entry.address == "198.51.100.7"
    assert signed_in(browser)


def test_sessions_lists_browsers_and_tokens_without_secrets_and_marks_the_current(
    api_client, make_patient
):
    issued = make_patient()
    other = token_issue(user=issued.user, client=ClientInfo(address="192.0.2.1", user_agent="App"))
    browser = browser_for(issued.user)

    response = api_client.get("/api/auth/sessions", **bearer(issued.raw))

    assert response.status_code == 200
    rows = response.json()
    assert {row["id"] for row in rows} == {
        f"token-{issued.token.pk}",
        f"token-{other.token.pk}",
        f"browser-{BrowserSession.objects.get(user=issued.user).pk}",
    }
    assert [row["current"] for row in rows].count(True) == 1
    current = next(row for row in rows if row["current"])
    assert current["id"] == f"token-{issued.token.pk}"
    assert {row["kind"] for row in rows} == {"api_token", "browser"}
    assert set(rows[0]) == {
        "id", "kind", "device", "address", "created_at", "last_seen_at", "expires_at", "current"
    }  # fmt: skip
    text = response.content.decode()
    assert issued.raw not in text and other.raw not in text
    assert browser.session.session_key not in text
    assert issued.token.digest not in text


def test_sessions_of_another_user_are_not_listed(api_client, make_patient):
    mine, theirs = make_patient(), make_patient()
    browser_for(theirs.user)

    rows = api_client.get("/api/auth/sessions", **bearer(mine.raw)).json()

    assert [row["id"] for row in rows] == [f"token-{mine.token.pk}"]


def test_listing_sessions_costs_the_same_queries_for_one_or_many(
    make_patient, django_assert_max_num_queries
):
    issued = make_patient()
    for number in range(8):
        token_issue(user=issued.user, client=ClientInfo(user_agent=f"device {number}"))
        browser_for(issued.user)

    with django_assert_max_num_queries(2):
        entries = sessions_of(user=issued.user, current_token_id=issued.token.pk)

    assert len(entries) == 17


def test_ended_or_expired_sessions_are_not_listed(make_patient):
    issued = make_patient()
    with time_machine.travel(timezone.now() - timedelta(hours=13)):
        old = token_issue(user=issued.user, client=ClientInfo())
        browser_for(issued.user)

    ids = {entry.id for entry in sessions_of(user=issued.user)}

    assert ids == {f"token-{issued.token.pk}"}
    assert f"token-{old.token.pk}" not in ids


# --- ending one ---------------------------------------------------------------------------------


def test_deleting_a_token_session_makes_it_401_on_the_next_request(api_client, make_patient):
    issued = make_patient()
    other = token_issue(user=issued.user, client=ClientInfo())
    assert me(api_client, other.raw).status_code == 200

    response = api_client.delete(f"/api/auth/sessions/token-{other.token.pk}", **bearer(issued.raw))

    assert response.status_code == 204
    assert me(api_client, other.raw).status_code == 401
    assert me(api_client, issued.raw).status_code == 200
    assert AuditEvent.objects.filter(
        action=AuditAction.AUTH_SESSION_END, object_type="api_token", object_id=other.token.pk
    ).exists()


def test_deleting_a_browser_session_signs_that_browser_out(api_client, make_patient):
    issued = make_patient()
    browser = browser_for(issued.user)
    entry = BrowserSession.objects.get(user=issued.user)

    response = api_client.delete(f"/api/auth/sessions/browser-{entry.pk}", **bearer(issued.raw))

    assert response.status_code == 204
    assert not signed_in(browser)
    assert not Session.objects.filter(session_key=entry.session_id).exists()
    assert not BrowserSession.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize("kind", ["token", "browser"])
def test_someone_elses_session_is_404_and_stays_alive(api_client, make_patient, kind):
    mine, theirs = make_patient(), make_patient()
    browser = browser_for(theirs.user)
    pk = theirs.token.pk if kind == "token" else BrowserSession.objects.get(user=theirs.user).pk

    response = api_client.delete(f"/api/auth/sessions/{kind}-{pk}", **bearer(mine.raw))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert me(api_client, theirs.raw).status_code == 200
    assert signed_in(browser)


@pytest.mark.parametrize("session_id", ["token-999999", "browser-x", "12", "token-", "token-1e3"])
def test_unknown_session_ids_are_404(api_client, make_patient, session_id):
    issued = make_patient()

    response = api_client.delete(f"/api/auth/sessions/{session_id}", **bearer(issued.raw))

    assert response.status_code == 404


# --- ending all ---------------------------------------------------------------------------------


def test_logout_all_ends_every_token_and_browser_session_this_one_included(
    api_client, make_patient
):
    issued = make_patient()
    other = token_issue(user=issued.user, client=ClientInfo())
    browser = browser_for(issued.user)
    bystander = make_patient()

    response = post(api_client, "/api/auth/logout-all", raw=issued.raw)

    assert response.status_code == 200
    assert response.json() == {"ended": 3}
    assert me(api_client, issued.raw).status_code == 401
    assert me(api_client, other.raw).status_code == 401
    assert not signed_in(browser)
    assert me(api_client, bystander.raw).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.AUTH_LOGOUT_ALL)
    assert event.details == {"reason": "logout_all", "api_tokens": 2, "browser_sessions": 1}


def test_password_change_ends_every_other_session_and_keeps_this_one(api_client, make_patient):
    issued = make_patient(email="wechsel@example.com")
    other = token_issue(user=issued.user, client=ClientInfo())
    browser = browser_for(issued.user)

    response = post(
        api_client,
        "/api/auth/password",
        {"current_password": PASSWORD, "new_password": "Neue-Brücke-über-den-Fluss"},
        issued.raw,
    )

    assert response.status_code == 204
    assert me(api_client, issued.raw).status_code == 200
    assert me(api_client, other.raw).status_code == 401
    assert not signed_in(browser)
    assert login(
        email="wechsel@example.com", password="Neue-Brücke-über-den-Fluss", client=ClientInfo()
    )


def test_password_change_needs_the_current_password_and_a_valid_new_one(api_client, make_patient):
    issued = make_patient()
    other = token_issue(user=issued.user, client=ClientInfo())

    wrong = post(
        api_client,
        "/api/auth/password",
        {"current_password": "falsch-falsch-1", "new_password": "Neue-Brücke-über-den-Fluss"},
        issued.raw,
    )
    weak = post(
        api_client,
        "/api/auth/password",
        {"current_password": PASSWORD, "new_password": "Passwort2026!"},
        issued.raw,
    )

    assert wrong.status_code == 422
    assert [error["field"] for error in wrong.json()["errors"]] == ["current_password"]
    assert weak.status_code == 422
    assert {error["field"] for error in weak.json()["errors"]} == {"new_password"}
    assert me(api_client, other.raw).status_code == 200


def test_account_closure_ends_every_session_and_token(api_client, make_patient):
    issued = make_patient()
    other = token_issue(user=issued.user, client=ClientInfo())
    browser = browser_for(issued.user)

    response = post(api_client, "/api/patient/erasure-request", raw=issued.raw)

    assert response.status_code in (200, 201, 202)
    assert me(api_client, issued.raw).status_code == 401
    assert me(api_client, other.raw).status_code == 401
    assert not signed_in(browser)
    assert not BrowserSession.objects.filter(user=issued.user).exists()


def test_a_role_change_ends_every_session_of_that_user(api_client):
    staff = StaffFactory(role=Role.PRACTITIONER)
    issued = token_issue(user=staff, client=ClientInfo())
    browser = browser_for(staff)

    staff.role = Role.AUDITOR
    staff.save()

    assert me(api_client, issued.raw).status_code == 401
    assert not signed_in(browser)
    event = AuditEvent.objects.get(action=AuditAction.AUTH_LOGOUT_ALL)
    assert event.details["reason"] == "role_change"


def test_a_removed_membership_ends_every_session_of_that_user(api_client):
    staff = StaffFactory(role=Role.PRACTITIONER)
    colleague = StaffFactory(role=Role.PRACTITIONER)
    issued, kept = (
        token_issue(user=staff, client=ClientInfo()),
        token_issue(user=colleague, client=ClientInfo()),
    )
    browser = browser_for(staff)

    Membership.objects.get(user=staff).delete()

    assert me(api_client, issued.raw).status_code == 401
    assert not signed_in(browser)
    assert me(api_client, kept.raw).status_code == 200


def test_a_changed_membership_role_ends_every_session(api_client):
    staff = StaffFactory(role=Role.CLINIC_ADMIN)
    issued = token_issue(user=staff, client=ClientInfo())
    membership = Membership.objects.get(user=staff)

    membership.role = Role.PRACTITIONER
    membership.save()

    assert me(api_client, issued.raw).status_code == 401


def test_a_deactivated_account_loses_its_browser_sessions():
    staff = StaffFactory()
    browser = browser_for(staff)

    staff.is_active = False
    staff.save()

    assert not signed_in(browser)
    assert not BrowserSession.objects.filter(user=staff).exists()


# --- browser timeouts ---------------------------------------------------------------------


def test_a_browser_session_ends_after_the_idle_timeout(settings, make_patient):
    settings.PATTERM_SESSION_IDLE_TIMEOUT = timedelta(minutes=30)
    user = make_patient().user
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        browser = browser_for(user)
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert signed_in(browser)
    with time_machine.travel(start + timedelta(minutes=58), tick=False):
        assert signed_in(browser)  # 29 minutes after the last visit
    with time_machine.travel(start + timedelta(minutes=88, seconds=1), tick=False):
        assert not signed_in(browser)
    assert not BrowserSession.objects.filter(user=user).exists()


def test_a_browser_session_ends_after_its_absolute_lifetime_even_when_used(settings, make_patient):
    settings.PATTERM_SESSION_MAX_AGE = timedelta(hours=12)
    user = make_patient().user
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        browser = browser_for(user)
    for minutes in range(20, 12 * 60, 20):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            assert signed_in(browser), minutes
    with time_machine.travel(start + timedelta(hours=12), tick=False):
        assert not signed_in(browser)


def test_last_seen_is_written_at_most_once_a_minute(make_patient):
    user = make_patient().user
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        browser = browser_for(user)
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        signed_in(browser)
    assert BrowserSession.objects.get(user=user).last_seen_at == start
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        signed_in(browser)
    assert BrowserSession.objects.get(user=user).last_seen_at == start + timedelta(seconds=61)


def test_a_session_without_a_registry_row_is_signed_out(make_patient):
    user = make_patient().user
    browser = browser_for(user)
    BrowserSession.objects.filter(user=user).delete()

    assert not signed_in(browser)


def test_a_new_session_key_is_issued_at_login():
    staff = StaffFactory(is_staff=True, email="admin.login@example.com")
    browser = Client()
    browser.get("/admin/login/")
    session = browser.session
    session["before_login"] = True
    session.save()
    before = session.session_key

    response = browser.post(
        "/admin/login/?next=/admin/", {"username": staff.email, "password": PASSWORD}
    )

    assert response.status_code == 302
    after = browser.session.session_key
    assert after and after != before
    assert not Session.objects.filter(session_key=before).exists()
    assert BrowserSession.objects.get(user=staff).session_id == after


def test_an_operator_setting_a_password_in_the_admin_ends_the_users_sessions(
    api_client, make_patient
):
    from accounts.models import User

    issued = make_patient()
    browser = browser_for(issued.user)
    operator = User.objects.create_superuser("operator@example.com", PASSWORD)
    admin = Client()
    admin.force_login(operator)

    response = admin.post(
        f"/admin/accounts/user/{issued.user.pk}/password/",
        {"password1": "Neue-Brücke-über-den-Fluss", "password2": "Neue-Brücke-über-den-Fluss"},
    )

    assert response.status_code == 302
    assert me(api_client, issued.raw).status_code == 401
    assert not signed_in(browser)
    assert signed_in(admin)
