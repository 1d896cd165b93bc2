"""Account services called directly: what the API and, later, pages and commands rely on."""

import pytest
from django.db import IntegrityError

from accounts.models import ApiToken, User
from accounts.services import ClientInfo, login, token_authenticate, token_revoke, user_create
from audit.models import AuditAction, AuditEvent, Outcome
from patterm.errors import Conflict, NotAuthenticated

pytestmark = pytest.mark.django_db


def test_emails_are_stored_in_one_spelling_and_unique_whatever_the_case():
    user = user_create(email="  Erika.M@Example.DE ", password="Lange-Reise-2026", role="patient")

    assert user.email == "erika.m@example.de"
    with pytest.raises(Conflict) as duplicate:
        user_create(email="ERIKA.M@example.de", password="Lange-Reise-2026", role="patient")
    assert duplicate.value.code == "email_taken"
    assert User.objects.count() == 1


def test_the_database_refuses_a_second_spelling_that_bypasses_the_service():
    User.objects.create(email="erika@example.de")
    with pytest.raises(IntegrityError):
        User.objects.create(email="Erika@Example.DE")


def test_token_revoke_ends_the_token_and_is_audited_once(make_patient):
    issued = make_patient()

    token_revoke(actor=issued.user, token=issued.token)
    token_revoke(actor=issued.user, token=issued.token)  # already revoked: nothing new

    assert token_authenticate(raw=issued.raw) is None
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    events = AuditEvent.objects.filter(action=AuditAction.AUTH_TOKEN_REVOKE)
    assert events.count() == 1
    assert events.get().actor_id == issued.user.pk


def test_failed_login_names_an_existing_account_by_id_only(make_patient):
    patient = make_patient(email="erika@example.com").user

    with pytest.raises(NotAuthenticated):
        login(email="erika@example.com", password="falsch-falsch", client=ClientInfo())
    with pytest.raises(NotAuthenticated):
        login(email="niemand@example.com", password="falsch-falsch", client=ClientInfo())

    known, unknown = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED).order_by("seq")
    assert (known.object_type, known.object_id) == ("user", str(patient.pk))
    assert known.subject_ref
    assert (unknown.object_type, unknown.object_id, unknown.subject_ref) == ("", "", "")
    assert {known.outcome, unknown.outcome} == {Outcome.FAILURE}
    for event in (known, unknown):
        assert "example.com" not in str(event.details)


def test_inactive_accounts_cannot_log_in(make_patient):
    user = make_patient(email="zu@example.com").user
    User.objects.filter(pk=user.pk).update(is_active=False)

    with pytest.raises(NotAuthenticated):
        login(email="zu@example.com", password="Lange-Reise-2026", client=ClientInfo())
