"""Password storage and policy (SECURITY.md P1, P6), with the production hashers."""

import re

import pytest
from django.contrib.auth.hashers import make_password
from django.test import override_settings

from accounts.models import User
from accounts.services import ClientInfo, login
from patterm.errors import InvalidInput
from patterm.settings import base

pytestmark = pytest.mark.django_db

production_hashers = override_settings(PASSWORD_HASHERS=base.PASSWORD_HASHERS)


@production_hashers
def test_new_passwords_are_argon2id_with_at_least_owasp_parameters(make_patient):
    user = make_patient(password="Lange-Reise-2026").user
    user.refresh_from_db()

    match = re.fullmatch(r"argon2\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$.+", user.password)
    assert match, user.password[:30]
    memory_kib, time_cost, _ = map(int, match.groups())
    assert memory_kib >= 19_456
    assert time_cost >= 2


@production_hashers
def test_a_pbkdf2_hash_is_upgraded_to_argon2id_at_login(make_patient):
    user = make_patient(email="alt@example.com").user
    User.objects.filter(pk=user.pk).update(
        password=make_password("Alte-Praxis-2019", hasher="pbkdf2_sha256")
    )

    login(email="alt@example.com", password="Alte-Praxis-2019", client=ClientInfo())

    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")


@pytest.mark.parametrize(
    "password, reason",
    [
        ("kurz-9!ab", "too short"),
        ("password123", "common"),
        ("1234567890123", "numeric"),
        ("patient1@example.com", "like the e-mail"),
    ],
)
def test_weak_passwords_are_refused_with_a_field_error(make_patient, password, reason):
    with pytest.raises(InvalidInput) as refused:
        make_patient(email="patient1@example.com", password=password)

    assert refused.value.errors
    assert {error["field"] for error in refused.value.errors} == {"password"}
    assert not User.objects.exists()


def test_long_passphrases_are_welcome(make_patient):
    passphrase = "ein langer satz über den sommer am see " * 5  # 195 characters

    user = make_patient(email="leserin@example.com", password=passphrase).user

    assert user.check_password(passphrase)
