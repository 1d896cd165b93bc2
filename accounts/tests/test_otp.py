"""TOTP for staff (SECURITY.md P5): enrolment with a QR code, a code works once, a replayed or
stale code fails, recovery codes are hashed and single-use, and staff without a second factor
cannot reach medical data or the audit log once it is required."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken, RecoveryCode, Role
from accounts.otp import otp_enrolment_confirm, otp_enrolment_start
from accounts.services import ClientInfo, token_issue
from accounts.tests.factories import StaffFactory
from audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"


def code_at(device: TOTPDevice, moment) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = moment.timestamp()
    return f"{totp.token():0{device.digits}d}"


def post(client, url, body=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}
    return client.post(url, data=json.dumps(body or {}), content_type="application/json", **headers)


def get(client, url, raw):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")


def api_login(client, email, otp=None, password=PASSWORD):
    body = {"email": email, "password": password}
    if otp is not None:
        body["otp"] = otp
    return post(client, "/api/auth/login", body)


def enrolled(user, moment=None):
    """A confirmed device for `user` (through the real services); returns (device, codes)."""
    moment = moment or timezone.now()
    with time_machine.travel(moment - timedelta(minutes=5), tick=False):
        enrolment = otp_enrolment_start(user=user, verified=False)
        codes = otp_enrolment_confirm(
            user=user,
            code=code_at(enrolment.device, moment - timedelta(minutes=5)),
            verified=False,
        )
    return TOTPDevice.objects.get(pk=enrolment.device.pk), codes


@pytest.fixture
def practitioner():
    return StaffFactory(role=Role.PRACTITIONER, email="dr.berger@example.com")


# --- enrolment ---------------------------------------------------------------------------------


def test_enrolment_gives_a_qr_code_and_the_first_code_confirms_it(api_client, practitioner):
    issued = token_issue(user=practitioner, client=ClientInfo())

    started = post(api_client, "/api/auth/otp/enrolment", raw=issued.raw)

    assert started.status_code == 201
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert "issuer=Patterm" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg") and "<script" not in body["qr_svg"]
    device = TOTPDevice.objects.get(user=practitioner)
    assert not device.confirmed

    confirmed = post(
        api_client, "/api/auth/otp/confirm", {"otp": code_at(device, timezone.now())}, issued.raw
    )

    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed
    assert ApiToken.objects.get(pk=issued.token.pk).otp_verified
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_OTP_CONFIRM).count() == 1


def test_a_wrong_first_code_confirms_nothing(api_client, practitioner):
    issued = token_issue(user=practitioner, client=ClientInfo())
    post(api_client, "/api/auth/otp/enrolment", raw=issued.raw)
    device = TOTPDevice.objects.get(user=practitioner)
    wrong = f"{(int(code_at(device, timezone.now())) + 1) % 1_000_000:06d}"

    response = post(api_client, "/api/auth/otp/confirm", {"otp": wrong}, issued.raw)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "otp"
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
    assert not RecoveryCode.objects.exists()


def test_patients_do_not_enrol(api_client, make_patient):
    issued = make_patient()

    response = post(api_client, "/api/auth/otp/enrolment", raw=issued.raw)

    assert response.status_code == 403
    assert response.json()["code"] == "not_staff"


def test_an_unverified_token_cannot_replace_an_existing_device(api_client, practitioner):
    enrolled(practitioner)
    stolen = token_issue(user=practitioner, client=ClientInfo())  # no second factor proved

    response = post(api_client, "/api/auth/otp/enrolment", raw=stolen.raw)

    assert response.status_code == 403
    assert response.json()["code"] == "otp_required"
    assert TOTPDevice.objects.filter(user=practitioner).count() == 1


# --- login with the second factor ---------------------------------------------------------------


def test_login_needs_the_code_once_a_device_is_confirmed(api_client, practitioner):
    device, _ = enrolled(practitioner)

    without = api_login(api_client, practitioner.email)
    with_code = api_login(api_client, practitioner.email, code_at(device, timezone.now()))

    assert without.status_code == 401
    assert without.json()["code"] == "otp_required"
    assert "token" not in without.json()
    assert with_code.status_code == 200
    token = ApiToken.objects.get(user=practitioner, otp_verified=True)
    assert with_code.json()["token"].startswith(token.prefix)


def test_a_code_works_once_and_its_replay_is_refused(api_client, practitioner):
    device, _ = enrolled(practitioner)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        code = code_at(device, now)
        first = api_login(api_client, practitioner.email, code)
        replay = api_login(api_client, practitioner.email, code)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert replay.json()["code"] == "otp_invalid"
    assert AuditEvent.objects.filter(
        action=AuditAction.AUTH_LOGIN_FAILED, details__reason="invalid_otp"
    ).exists()


def test_a_code_of_an_earlier_step_is_refused_once_a_later_one_was_used(api_client, practitioner):
    device, _ = enrolled(practitioner)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        assert api_login(api_client, practitioner.email, code_at(device, now)).status_code == 200
        earlier = code_at(device, now - timedelta(seconds=30))
        assert api_login(api_client, practitioner.email, earlier).status_code == 401


def test_the_previous_steps_code_still_works_but_a_stale_one_does_not(api_client, practitioner):
    device, _ = enrolled(practitioner)
    # 5 s into a 30 s step, so that 2 s later is still the same step
    now = datetime.fromtimestamp((timezone.now().timestamp() // 30) * 30 + 5, tz=UTC)
    with time_machine.travel(now, tick=False):
        stale = api_login(
            api_client, practitioner.email, code_at(device, now - timedelta(seconds=90))
        )
    with time_machine.travel(now + timedelta(seconds=2), tick=False):  # past the throttle delay
        late = api_login(
            api_client, practitioner.email, code_at(device, now - timedelta(seconds=30))
        )

    assert stale.status_code == 401
    assert stale.json()["code"] == "otp_invalid"
    assert late.status_code == 200


def test_a_wrong_code_with_the_right_password_issues_no_token(api_client, practitioner):
    device, _ = enrolled(practitioner)
    wrong = f"{(int(code_at(device, timezone.now())) + 7) % 1_000_000:06d}"

    response = api_login(api_client, practitioner.email, wrong)

    assert response.status_code == 401
    assert not ApiToken.objects.filter(user=practitioner).exists()


# --- recovery codes ---------------------------------------------------------------------------


def test_recovery_codes_are_stored_only_as_password_hashes(practitioner):
    _, codes = enrolled(practitioner)

    rows = list(RecoveryCode.objects.filter(user=practitioner))
    assert len(rows) == 10
    stored = " ".join(row.code_hash for row in rows)
    for code in codes:
        assert code not in stored and code.replace("-", "") not in stored
    assert any(check_password(codes[0].replace("-", ""), row.code_hash) for row in rows)


def test_a_recovery_code_signs_in_once(api_client, practitioner):
    _, codes = enrolled(practitioner)

    first = api_login(api_client, practitioner.email, codes[3])
    again = api_login(api_client, practitioner.email, codes[3])
    other = api_login(api_client, practitioner.email, codes[4].upper().replace("-", " "))

    assert first.status_code == 200
    assert again.status_code == 401
    assert other.status_code == 200
    assert RecoveryCode.objects.filter(user=practitioner, used_at__isnull=False).count() == 2
    login = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN).order_by("seq").first()
    assert login.details == {"second_factor": "recovery_code"}


# --- the staff gate -----------------------------------------------------------------------------


@pytest.fixture
def otp_required(settings):
    settings.PATTERM_REQUIRE_STAFF_OTP = True


@pytest.mark.parametrize(
    "role, url",
    [
        (Role.PRACTITIONER, "/api/medical/schedule"),
        (Role.PRACTITIONER, "/api/medical/patients/1/record"),
        (Role.CLINIC_ADMIN, "/api/medical/emergency-accesses"),
        (Role.AUDITOR, "/api/audit/events"),
        (Role.AUDITOR, "/api/audit/verify"),
        (Role.PRACTITIONER, "/api/appointments"),  # booking snapshots: names, reasons
    ],
)
def test_staff_without_a_second_factor_cannot_reach_medical_data_or_the_audit_log(
    api_client, otp_required, role, url
):
    staff = StaffFactory(role=role)
    issued = token_issue(user=staff, client=ClientInfo())

    response = get(api_client, url, issued.raw)

    assert response.status_code == 403
    assert response.json()["code"] == "otp_required"
    assert get(api_client, "/api/me", issued.raw).status_code == 200


def test_staff_reach_medical_data_after_signing_in_with_their_code(
    api_client, otp_required, practitioner
):
    device, _ = enrolled(practitioner)
    token = api_login(api_client, practitioner.email, code_at(device, timezone.now())).json()

    response = get(api_client, "/api/medical/schedule", token["token"])

    assert response.status_code == 200


def test_confirming_a_device_opens_the_gate_for_the_token_that_confirmed_it(
    api_client, otp_required, practitioner
):
    issued = token_issue(user=practitioner, client=ClientInfo())
    assert get(api_client, "/api/medical/schedule", issued.raw).status_code == 403
    post(api_client, "/api/auth/otp/enrolment", raw=issued.raw)
    device = TOTPDevice.objects.get(user=practitioner)
    post(api_client, "/api/auth/otp/confirm", {"otp": code_at(device, timezone.now())}, issued.raw)

    assert get(api_client, "/api/medical/schedule", issued.raw).status_code == 200


def test_patients_are_not_asked_for_a_second_factor(api_client, otp_required, make_patient):
    issued = make_patient()

    assert get(api_client, "/api/patient/record", issued.raw).status_code == 200
    assert get(api_client, "/api/appointments", issued.raw).status_code == 200


def test_without_the_requirement_demo_staff_skip_the_second_factor(api_client, settings):
    settings.PATTERM_REQUIRE_STAFF_OTP = False
    staff = StaffFactory(role=Role.PRACTITIONER)
    issued = token_issue(user=staff, client=ClientInfo())

    assert get(api_client, "/api/medical/schedule", issued.raw).status_code == 200


def test_the_django_admin_needs_the_second_factor_too(otp_required):
    operator = StaffFactory(role=Role.CLINIC_ADMIN, is_staff=True, is_superuser=True)
    device, _ = enrolled(operator)
    password_only = Client()
    password_only.post("/admin/login/", {"username": operator.email, "password": PASSWORD})
    with_code = Client()
    with_code.post("/account/login/", {"email": operator.email, "password": PASSWORD})
    with_code.post("/account/login/code/", {"code": code_at(device, timezone.now())})

    assert password_only.get("/admin/").status_code == 403
    assert with_code.get("/admin/").status_code == 200


def test_staff_pages_under_a_protected_path_answer_403_without_a_second_factor(otp_required):
    staff = StaffFactory(role=Role.AUDITOR)
    browser = Client()
    browser.force_login(staff)

    response = browser.get("/staff/audit/events/")

    assert response.status_code == 403
    assert b"otp_required" in response.content


# --- second-factor reset ------------------------------------------------------------------------


def test_a_new_device_ends_every_other_session_of_the_user(api_client, practitioner):
    device, _ = enrolled(practitioner)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        mine = api_login(api_client, practitioner.email, code_at(device, now)).json()["token"]
    other = token_issue(user=practitioner, client=ClientInfo())
    later = now + timedelta(minutes=2)
    with time_machine.travel(later, tick=False):
        post(api_client, "/api/auth/otp/enrolment", raw=mine)
        new_device = TOTPDevice.objects.get(user=practitioner, confirmed=False)
        response = post(
            api_client, "/api/auth/otp/confirm", {"otp": code_at(new_device, later)}, mine
        )

        assert response.status_code == 200
        assert get(api_client, "/api/me", mine).status_code == 200
        assert get(api_client, "/api/me", other.raw).status_code == 401
    assert list(TOTPDevice.objects.filter(user=practitioner).values_list("pk", flat=True)) == [
        new_device.pk
    ]


def test_the_reset_command_removes_the_device_and_ends_every_session(api_client, practitioner):
    enrolled(practitioner)
    issued = token_issue(user=practitioner, client=ClientInfo())
    out = StringIO()

    call_command("otp_reset", practitioner.email, "--yes", stdout=out)

    assert "reset" in out.getvalue()
    assert not TOTPDevice.objects.filter(user=practitioner).exists()
    assert not RecoveryCode.objects.filter(user=practitioner).exists()
    assert get(api_client, "/api/me", issued.raw).status_code == 401
    assert api_login(api_client, practitioner.email).status_code == 200  # no code needed now


def test_the_reset_command_refuses_an_unknown_account():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No account"):
        call_command("otp_reset", "niemand@example.com", "--yes")


def test_a_recovery_code_costs_one_hash_check_not_ten(api_client, practitioner, monkeypatch):
    from accounts import otp

    _, codes = enrolled(practitioner)
    checked = []
    real_check = otp.check_password

    def counting_check(raw, encoded):
        checked.append(encoded)
        return real_check(raw, encoded)

    monkeypatch.setattr(otp, "check_password", counting_check)

    assert api_login(api_client, practitioner.email, codes[7]).status_code == 200
    assert len(checked) == 1
    wrong = codes[7][:5] + "zzzz-zzzz"
    assert api_login(api_client, practitioner.email, wrong).status_code == 401
    assert len(checked) <= 2  # the used code is not even tried again
