"""API tokens: random, stored as a digest, and dead on the very next request once they end."""

import hashlib
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import token_authenticate

pytestmark = pytest.mark.django_db


def me(client, token):
    return client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_token_is_stored_only_as_its_digest(make_patient):
    issued = make_patient()
    row = ApiToken.objects.get(pk=issued.token.pk)
    stored = [str(value) for value in row.__dict__.values()]

    assert row.digest == hashlib.sha256(issued.raw.encode()).hexdigest()
    assert not any(issued.raw in value for value in stored)
    assert issued.raw.startswith(row.prefix)


def test_tokens_carry_256_random_bits(make_patient):
    raws = {make_patient().raw for _ in range(20)}

    assert len(raws) == 20
    # "ptk_" + 43 URL-safe base64 characters = 32 random bytes
    assert all(len(raw) == 4 + 43 for raw in raws)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),  # tampered last character
        lambda raw: "ptk_" + "x" * 43,  # never issued
        lambda raw: raw + "extra",
        lambda raw: raw.removeprefix("ptk_"),
        lambda raw: "",
    ],
    ids=["tampered", "never issued", "extended", "without scheme", "empty"],
)
def test_tampered_or_unknown_tokens_are_401(api_client, make_patient, mangle):
    issued = make_patient()

    assert me(api_client, mangle(issued.raw)).status_code == 401
    assert me(api_client, issued.raw).status_code == 200


def test_revoked_token_is_401_on_the_next_request(api_client, make_patient):
    issued = make_patient()
    assert me(api_client, issued.raw).status_code == 200

    ApiToken.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())

    assert me(api_client, issued.raw).status_code == 401


def test_token_ends_after_its_absolute_lifetime_even_when_used(api_client, make_patient, settings):
    issued = make_patient()
    start = timezone.now()
    # Used every 20 minutes (below the idle timeout) until the absolute lifetime runs out.
    step = timedelta(minutes=20)
    moment = start
    with time_machine.travel(start, tick=False) as traveller:
        while moment + step < start + settings.PATTERM_TOKEN_MAX_AGE:
            moment += step
            traveller.move_to(moment)
            assert me(api_client, issued.raw).status_code == 200
        traveller.move_to(start + settings.PATTERM_TOKEN_MAX_AGE + timedelta(seconds=1))
        assert me(api_client, issued.raw).status_code == 401


def test_token_ends_after_the_idle_timeout(api_client, make_patient, settings):
    issued = make_patient()
    idle = settings.PATTERM_TOKEN_IDLE_TIMEOUT
    with time_machine.travel(timezone.now() + idle - timedelta(seconds=5), tick=False):
        assert me(api_client, issued.raw).status_code == 200
    with time_machine.travel(timezone.now() + 2 * idle, tick=False):
        assert me(api_client, issued.raw).status_code == 401


def test_inactive_user_token_is_401(api_client, make_patient):
    issued = make_patient()
    issued.user.is_active = False
    issued.user.save()

    assert me(api_client, issued.raw).status_code == 401


def test_last_used_is_written_at_most_once_a_minute(make_patient, django_assert_num_queries):
    issued = make_patient()
    start = issued.token.last_used_at

    with (
        time_machine.travel(start + timedelta(seconds=30), tick=False),
        django_assert_num_queries(1),  # the lookup only, no write
    ):
        token_authenticate(raw=issued.raw)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == start

    later = start + timedelta(seconds=61)
    with (
        time_machine.travel(later, tick=False),
        django_assert_num_queries(2),  # the lookup and one update
    ):
        token_authenticate(raw=issued.raw)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == later
