"""The second factor for staff: TOTP devices (django-otp), recovery codes and the staff gate.

- A practitioner, clinic admin or auditor enrols a TOTP app: `otp_enrolment_start` makes an
  unconfirmed device (its QR code as inline SVG, drawn by segno), `otp_enrolment_confirm` takes
  the first code, confirms the device and hands out recovery codes once.
- A code works once: the device remembers the last time step used and refuses it and every
  earlier one (replay); it accepts the current step and one step either side, nothing older
  (stale). The device row is locked while a code is checked, so two requests with one code
  cannot both pass. Wrong codes slow the device down (django-otp's throttling).
- Recovery codes are stored as password hashes (Django's hashers) and each works once.
- With PATTERM_REQUIRE_STAFF_OTP, staff without a verified second factor get 403 `otp_required`
  on PATTERM_OTP_PROTECTED_PATHS (medical data, the audit log).
"""

import secrets
from dataclasses import dataclass

import segno
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp import login as django_otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import STAFF_ROLES, ApiToken, RecoveryCode, User
from accounts.sessions import EndReason, sessions_end_all
from audit.models import AuditAction
from audit.signals import send_event
from patterm.errors import Forbidden, InvalidInput, NotAuthenticated
from patterm.numbers import ASCII_DIGITS

MESSAGE_OTP_REQUIRED = _(
    "Set up and use your second factor (authenticator app) to reach medical data and the audit log."
)
MESSAGE_OTP_INVALID = _("The code is wrong or has expired.")
MESSAGE_NO_ENROLMENT = _("Start the set-up of the authenticator app first.")
MESSAGE_STAFF_ONLY = _("Only staff accounts use an authenticator app here.")

TOTP = "totp"
RECOVERY_CODE = "recovery_code"
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LENGTH = 12  # about 59 bits; the first 4 characters (20 bits) also find the row


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    otpauth_uri: str
    qr_svg: str


def otp_applies_to(user: User) -> bool:
    """Whether `user`'s role uses a second factor at all (patients do not, for now)."""
    return user.role in STAFF_ROLES


def otp_required_for(user: User) -> bool:
    return settings.PATTERM_REQUIRE_STAFF_OTP and otp_applies_to(user)


def otp_device(user: User) -> TOTPDevice | None:
    """The confirmed TOTP device of `user`, or None."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-pk").first()


def otp_path_protected(path: str) -> bool:
    return path.startswith(tuple(settings.PATTERM_OTP_PROTECTED_PATHS))


def otp_gate(*, user: User, path: str, verified: bool) -> None:
    """Refuse a staff member without a verified second factor on a protected path."""
    if not verified and otp_path_protected(path) and otp_required_for(user):
        raise Forbidden(MESSAGE_OTP_REQUIRED, "otp_required")


def _enrolment(device: TOTPDevice) -> Enrolment:
    uri = device.config_url
    svg = segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff")
    return Enrolment(device=device, otpauth_uri=uri, qr_svg=svg)


def _may_enrol(user: User, verified: bool) -> None:
    if not otp_applies_to(user):
        raise Forbidden(MESSAGE_STAFF_ONLY, "not_staff")
    # Replacing a device takes a session that proved the current one: a stolen password or
    # token alone must not swap in the thief's app.
    if not verified and otp_device(user) is not None:
        raise Forbidden(MESSAGE_OTP_REQUIRED, "otp_required")


@transaction.atomic
def otp_enrolment_start(*, user: User, verified: bool) -> Enrolment:
    """A new, unconfirmed TOTP device for `user` (any earlier unconfirmed one is dropped).

    `verified`: whether the session or token in use proved a second factor.
    """
    _may_enrol(user, verified)
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name="Patterm", confirmed=False)
    return _enrolment(device)


def otp_enrolment_pending(*, user: User) -> Enrolment | None:
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return _enrolment(device) if device else None


def _verify_totp(device: TOTPDevice, code: str) -> bool:
    """Check a code against the locked device row: once per time step, never older ones."""
    code = code.strip().replace(" ", "")
    if not (ASCII_DIGITS.fullmatch(code) and len(code) == device.digits):
        return False
    locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
    return locked.verify_token(code)


def otp_enrolment_confirm(
    *,
    user: User,
    code: str,
    verified: bool,
    current_token: ApiToken | None = None,
    current_session_key: str | None = None,
) -> list[str]:
    """Confirm the pending device with its first code; returns the new recovery codes (shown once).

    A device that replaces an earlier one is a second-factor reset: every other session and token
    of the user ends. The token or session in use counts as verified from now on.
    """
    _may_enrol(user, verified)
    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
        if device is None:
            raise InvalidInput([{"field": "otp", "message": str(MESSAGE_NO_ENROLMENT)}])
        verified = _verify_totp(device, code)
    if not verified:
        raise InvalidInput([{"field": "otp", "message": str(MESSAGE_OTP_INVALID)}])
    with transaction.atomic():
        replaced, _ = TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        codes = _recovery_codes_replace(user=user)
        if current_token is not None:
            ApiToken.objects.filter(pk=current_token.pk).update(otp_verified=True)
            current_token.otp_verified = True
        send_event(
            action=AuditAction.AUTH_OTP_CONFIRM,
            actor=user,
            object_type="otp_device",
            object_id=device.pk,
            details={"replaced": replaced},
        )
        if replaced:
            sessions_end_all(
                user=user,
                actor=user,
                reason=EndReason.OTP_RESET,
                keep_token_id=current_token.pk if current_token else None,
                keep_session_key=current_session_key,
            )
    return codes


def _recovery_codes_replace(*, user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [
        "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        for _ in range(settings.PATTERM_RECOVERY_CODE_COUNT)
    ]
    now = timezone.now()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, lookup=code[:4], code_hash=make_password(code), created_at=now)
        for code in codes
    )
    return [f"{code[:4]}-{code[4:8]}-{code[8:]}" for code in codes]


def recovery_codes_regenerate(*, user: User) -> list[str]:
    if otp_device(user) is None:
        raise InvalidInput([{"field": "otp", "message": str(MESSAGE_NO_ENROLMENT)}])
    with transaction.atomic():
        return _recovery_codes_replace(user=user)


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def _use_recovery_code(user: User, code: str) -> bool:
    normalized = code.strip().lower().replace("-", "").replace(" ", "")
    if len(normalized) != _RECOVERY_LENGTH or set(normalized) - set(_RECOVERY_ALPHABET):
        return False
    with transaction.atomic():
        candidates = RecoveryCode.objects.select_for_update().filter(
            user=user, lookup=normalized[:4], used_at__isnull=True
        )
        for row in candidates:  # one row, unless two codes share their first group
            if check_password(normalized, row.code_hash):
                # The conditional update makes the code single-use even against a racing request.
                return bool(
                    RecoveryCode.objects.filter(pk=row.pk, used_at__isnull=True).update(
                        used_at=timezone.now()
                    )
                )
    return False


def otp_check(*, user: User, code: str) -> str | None:
    """Which second factor `code` proves for `user` (TOTP, else a recovery code), or None."""
    device = otp_device(user)
    if device is None or not code:
        return None
    with transaction.atomic():
        if _verify_totp(device, code):
            return TOTP
    if _use_recovery_code(user, code):
        return RECOVERY_CODE
    return None


@transaction.atomic
def otp_reset(*, user: User, actor: User | None) -> bool:
    """Remove `user`'s devices and recovery codes (a lost phone) and end all their sessions.

    For operators (`manage.py otp_reset`). Returns False when there was nothing to reset.
    """
    devices, _ = TOTPDevice.objects.filter(user=user).delete()
    codes, _ = RecoveryCode.objects.filter(user=user).delete()
    if not devices and not codes:
        return False
    send_event(
        action=AuditAction.AUTH_OTP_RESET,
        actor=actor,
        object_type="user",
        object_id=user.pk,
    )
    sessions_end_all(user=user, actor=actor, reason=EndReason.OTP_RESET)
    return True


# --- The second step of the browser login -------------------------------------------------------

PENDING_SESSION_KEY = "patterm_otp_pending"
VERIFIED_SESSION_KEY = "patterm_otp_verified"
PENDING_LIFETIME_SECONDS = 300
MESSAGE_START_AGAIN = _("Please log in again: the sign-in took too long.")


def second_factor_await(*, request, user: User) -> None:
    """Remember, for five minutes, that `user` gave the right password and owes a code."""
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = {
        "user_id": user.pk,
        "since": int(timezone.now().timestamp()),
    }


def second_factor_pending(request) -> User | None:
    """The user who gave the right password in this browser and now owes a code, or None."""
    pending = request.session.get(PENDING_SESSION_KEY)
    if not pending:
        return None
    if timezone.now().timestamp() - pending.get("since", 0) > PENDING_LIFETIME_SECONDS:
        request.session.pop(PENDING_SESSION_KEY, None)
        return None
    return User.objects.filter(pk=pending.get("user_id"), is_active=True).first()


def session_verified(request) -> bool:
    """Whether this browser session proved a second factor (a TOTP or a recovery code)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    return bool(request.session.get(VERIFIED_SESSION_KEY)) or user.is_verified()


def session_login_second_factor(*, request, code: str) -> User:
    """Finish the browser login with a TOTP or recovery code; audited like the API login."""
    from django.contrib.auth import login as django_login

    from accounts.services import _login_failed

    user = second_factor_pending(request)
    if user is None:
        raise NotAuthenticated(MESSAGE_START_AGAIN, "otp_expired")
    method = otp_check(user=user, code=code)
    if method is None:
        _login_failed(email=user.email, reason="invalid_otp")
        raise InvalidInput([{"field": "code", "message": str(MESSAGE_OTP_INVALID)}])
    request.session.pop(PENDING_SESSION_KEY, None)
    with transaction.atomic():
        django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if method == TOTP:
            django_otp_login(request, otp_device(user))
        request.session[VERIFIED_SESSION_KEY] = True
        send_event(
            action=AuditAction.AUTH_LOGIN,
            actor=user,
            object_type="session",
            details={"second_factor": method},
        )
    return user


def session_mark_verified(request) -> None:
    """The browser that just confirmed a new device counts as verified."""
    request.session[VERIFIED_SESSION_KEY] = True
