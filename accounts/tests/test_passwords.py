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


# --- P6: the bundled breached list, personal data, length ------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "sunshine1234",  # on the list, digits added
        "Password2026!",  # capitals, digits and a symbol around a listed word
        "p@ssw0rd2026",  # l33t spelling
        "!!Football!!99",  # symbols on both sides
        "dragondragon",  # a listed word repeated
        "iloveyou2026",
    ],
)
def test_breached_passwords_are_refused_also_dressed_up(make_patient, password):
    with pytest.raises(InvalidInput) as refused:
        make_patient(email="sicher@example.com", password=password)

    assert "Datenlecks" in refused.value.errors[0]["message"]


def test_the_bundled_list_cites_its_source_and_holds_thousands():
    from accounts.passwords import LIST_PATH, breached_passwords

    header = LIST_PATH.read_text(encoding="utf-8").splitlines()[:4]
    assert any("10 million" in line for line in header)
    assert len(breached_passwords()) >= 5000
    assert {"123456", "password", "dragon"} <= breached_passwords()


@pytest.mark.parametrize(
    "password",
    [
        "Mustermann-Sommer-7",  # the patient's last name (kept in the vault, not on the user)
        "erika-am-see-2026",  # the first name
        "weber.katrin!2026",  # the e-mail's local part
        "Katrin-Weber-1984",  # the parts of the e-mail's local part
    ],
)
def test_passwords_built_from_the_own_email_or_name_are_refused(make_patient, password):
    with pytest.raises(InvalidInput) as refused:
        make_patient(email="katrin.weber@example.com", password=password)

    messages = " ".join(error["message"] for error in refused.value.errors)
    assert "E-Mail-Adresse" in messages or "ähnlich" in messages


def test_ten_characters_are_enough_and_nine_are_not(make_patient):
    with pytest.raises(InvalidInput):
        make_patient(email="neun@example.com", password="Ko7!xq2Lm")

    user = make_patient(email="zehn@example.com", password="Ko7!xq2Lmz").user

    assert user.check_password("Ko7!xq2Lmz")


def test_passwords_of_64_and_more_characters_sign_in(api_client, make_patient):
    long_password = "Kaffee und Kuchen am Nachmittag sind schön: " * 23  # 1,012 characters
    make_patient(email="lang.genug@example.com", password=long_password)

    response = api_client.post(
        "/api/auth/login",
        data={"email": "lang.genug@example.com", "password": long_password},
        content_type="application/json",
    )

    assert len(long_password) > 1000
    assert response.status_code == 200
