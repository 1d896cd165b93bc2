"""Accounts: creating users, signing in and out, API tokens.

Patient sign-up is `vault.services.patient_register`: it needs the encrypted profile, and
`accounts` sits below `vault`, so it offers `user_create` and `token_issue` for it to call.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth import login as django_login
from django.contrib.auth import logout as django_logout
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import lockout, scopes
from accounts.models import ApiToken, Role, User, normalize_email
from audit.models import AuditAction, Outcome
from audit.signals import send_event
from patterm.errors import Conflict, InvalidInput, NotAuthenticated, TooManyAttempts

TOKEN_SCHEME = "ptk_"  # noqa: S105  (a label, not a secret)
TOKEN_PREFIX_LENGTH = len(TOKEN_SCHEME) + 8

MESSAGE_EMAIL_TAKEN = _("An account with this e-mail address already exists.")
MESSAGE_INVALID_CREDENTIALS = _("E-mail address or password is wrong.")
MESSAGE_OTP_NEEDED = _("Enter the code from your authenticator app (or a recovery code).")


@dataclass(frozen=True)
class ClientInfo:
    """What the request tells about the device a token is issued to."""

    address: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class IssuedToken:
    """The raw token, handed out exactly once, and the row that stands for it."""

    raw: str
    token: ApiToken

    @property
    def user(self) -> User:
        return self.token.user

    @property
    def expires_at(self) -> datetime:
        return self.token.expires_at


def _token_digest(raw: str) -> str:
    # A plain SHA-256 suffices: the token has 256 bits of entropy, so no dictionary applies.
    return hashlib.sha256(raw.encode()).hexdigest()


ADMIN_ROLES = (Role.CLINIC_ADMIN, Role.AUDITOR)


def user_create(
    *, email: str, password: str, role: str, personal_names: tuple[str, ...] = (), **fields
) -> User:
    """Create an account after Django's password validators accept the password.

    `personal_names` are names kept elsewhere (a patient's, in the vault) that the password must
    not contain either. Raises InvalidInput for a refused password, Conflict for an address
    already registered (whatever its case).
    """
    email = normalize_email(email)
    # Clinic admins and auditors work in the Django admin too (decision 0010); `is_staff` can
    # still be withdrawn there, and is never given to patients or practitioners by default.
    fields.setdefault("is_staff", role in ADMIN_ROLES)
    user = User(email=email, role=role, **fields)
    user.password_context_names = personal_names
    try:
        validate_password(password, user=user)
    except ValidationError as error:
        raise InvalidInput(
            [{"field": "password", "message": str(message)} for message in error.messages]
        ) from error
    user.set_password(password)
    if User.objects.filter(email=email).exists():
        raise Conflict(MESSAGE_EMAIL_TAKEN, "email_taken")
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as error:  # a concurrent sign-up with the same address won the race
        raise Conflict(MESSAGE_EMAIL_TAKEN, "email_taken") from error
    return user


NO_LOGIN_EMAIL_DOMAIN = "no-login.invalid"


def user_create_without_login(*, role: str, language: str = "de") -> User:
    """An account nobody signs in to (a relative an account holder manages): no usable
    password, and a unique placeholder address under a reserved domain (RFC 2606) that no
    mail leaves for and no password reset finds (Django's reset skips unusable passwords)."""
    user = User(
        email=f"{secrets.token_hex(12)}@{NO_LOGIN_EMAIL_DOMAIN}", role=role, language=language
    )
    user.set_unusable_password()
    user.save()
    return user


def user_has_login(user: User) -> bool:
    return user.has_usable_password() and not user.email.endswith("@" + NO_LOGIN_EMAIL_DOMAIN)


def user_login_give(
    *, user: User, email: str, password: str, personal_names: tuple[str, ...] = ()
) -> User:
    """Give an account without login an address and a password (a relative taking over):
    the same password rules and address check as `user_create`."""
    email = normalize_email(email)
    user.password_context_names = personal_names
    try:
        validate_password(password, user=user)
    except ValidationError as error:
        raise InvalidInput(
            [{"field": "password", "message": str(message)} for message in error.messages]
        ) from error
    if User.objects.filter(email=email).exclude(pk=user.pk).exists():
        raise Conflict(MESSAGE_EMAIL_TAKEN, "email_taken")
    user.email = email
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "password"])
    except IntegrityError as error:
        raise Conflict(MESSAGE_EMAIL_TAKEN, "email_taken") from error
    return user


def user_language_set(*, user: User, language: str) -> User:
    """The language of the e-mails Patterm sends to `user` (reminders, waitlist offers)."""
    User.objects.filter(pk=user.pk).update(language=language)
    user.language = language
    return user


def token_issue(
    *, user: User, client: ClientInfo, otp_verified: bool = False, scope: str | None = None
) -> IssuedToken:
    """A new token for `user`; `scope`: SMART v2 scopes for the FHIR API (checked by the
    caller with `scopes.scope_errors`), None for an /api token."""
    raw = TOKEN_SCHEME + secrets.token_urlsafe(32)  # 256 bits from the OS CSPRNG
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        prefix=raw[:TOKEN_PREFIX_LENGTH],
        digest=_token_digest(raw),
        created_at=now,
        last_used_at=now,
        expires_at=now + settings.PATTERM_TOKEN_MAX_AGE,
        user_agent=client.user_agent[:200],
        created_from=client.address,
        otp_verified=otp_verified,
        scope=scope or "",
    )
    return IssuedToken(raw=raw, token=token)


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token for a raw bearer value, or None: unknown, revoked, expired or idle.

    Records use at most once per PATTERM_TOKEN_TOUCH_INTERVAL, so most requests write nothing.
    """
    if not raw.startswith(TOKEN_SCHEME) or len(raw) > 128:
        return None
    digest = _token_digest(raw)
    candidates = ApiToken.objects.select_related("user").filter(
        prefix=raw[:TOKEN_PREFIX_LENGTH], revoked_at__isnull=True
    )
    token = next((t for t in candidates if hmac.compare_digest(t.digest, digest)), None)
    now = timezone.now()
    if (
        token is None
        or not token.user.is_active
        or token.expires_at <= now
        or token.last_used_at + settings.PATTERM_TOKEN_IDLE_TIMEOUT <= now
    ):
        return None
    if now - token.last_used_at >= settings.PATTERM_TOKEN_TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk, last_used_at=token.last_used_at).update(
            last_used_at=now
        )
        token.last_used_at = now
    return token


def _request_for(client: ClientInfo) -> HttpRequest:
    """A stand-in request for a login outside HTTP (tests, commands): authenticate() and the
    lockout need one, and read the address from it."""
    request = HttpRequest()
    request.method = "POST"
    request.META["REMOTE_ADDR"] = client.address or ""
    request.META["HTTP_USER_AGENT"] = client.user_agent
    return request


def login(
    *,
    email: str,
    password: str,
    client: ClientInfo,
    otp: str = "",
    request: HttpRequest | None = None,
    scope: str | None = None,
) -> IssuedToken:
    """Check the password (and the second factor, for staff with a device) and issue a token.

    A failure is audited (and committed), then refused. Django's `authenticate` verifies the
    hash (and re-encodes an outdated one with the first hasher in PASSWORD_HASHERS) and spends
    the same time whether or not the account exists. django-axes counts failures per account and
    account + address; a locked account is refused (429 `account_locked`) even with the right
    password, and with the same message whether or not it exists.

    `scope` (SMART v2, accounts/scopes.py) makes it a token for the FHIR API: checked against
    the user's role once the password is, a bad one is 422 and issues nothing.
    """
    from accounts import otp as second_factor  # otp builds on sessions, which builds on this

    email = normalize_email(email)
    request = request if request is not None else _request_for(client)
    user = authenticate(request, username=email, password=password)
    if user is None:
        if lockout.is_locked_out(request):
            _login_failed(email=email, reason="account_locked")
            raise TooManyAttempts(lockout.MESSAGE_LOCKED, lockout.LOCKED_CODE)
        _login_failed(email=email)
        raise NotAuthenticated(MESSAGE_INVALID_CREDENTIALS, "invalid_credentials")
    method = None
    if second_factor.otp_device(user) is not None:
        if not otp:
            raise NotAuthenticated(MESSAGE_OTP_NEEDED, "otp_required")
        method = second_factor.otp_check(user=user, code=otp)
        if method is None:
            _login_failed(email=email, reason="invalid_otp")
            raise NotAuthenticated(second_factor.MESSAGE_OTP_INVALID, "otp_invalid")
    if scope is not None:
        if errors := scopes.scope_errors(scope, role=user.role):
            raise InvalidInput([{"field": "scope", "message": message} for message in errors])
        scope = scopes.scope_normalize(scope)
    with transaction.atomic():
        issued = token_issue(user=user, client=client, otp_verified=method is not None, scope=scope)
        User.objects.filter(pk=user.pk).update(last_login=issued.token.created_at)
        send_event(
            action=AuditAction.AUTH_LOGIN,
            actor=user,
            object_type="api_token",
            object_id=issued.token.pk,
            subject_id=user.pk if user.role == Role.PATIENT else None,
            details={
                key: value for key, value in (("second_factor", method), ("scope", scope)) if value
            }
            or None,
        )
    lockout.attempts_reset(request=request, user=user)
    return issued


def _login_failed(*, email: str, reason: str = "invalid_credentials") -> None:
    """Audit a refused login in its own transaction, so that the refusal does not undo it.

    The row names the account tried when it exists (by id, never by address) and the reason:
    `invalid_credentials`, `account_locked` or `invalid_otp`.
    """
    account = User.objects.filter(email=email).values_list("pk", "role").first()
    with transaction.atomic():
        send_event(
            action=AuditAction.AUTH_LOGIN_FAILED,
            outcome=Outcome.FAILURE,
            object_type="user" if account else "",
            object_id=account[0] if account else "",
            subject_id=account[0] if account and account[1] == Role.PATIENT else None,
            details={"reason": reason},
        )


def _token_revoke(*, token: ApiToken, actor: User, action: str) -> None:
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        send_event(action=action, actor=actor, object_type="api_token", object_id=token.pk)


@transaction.atomic
def logout(*, token: ApiToken) -> None:
    """End the current API token: it answers 401 from the next request on."""
    _token_revoke(token=token, actor=token.user, action=AuditAction.AUTH_LOGOUT)


@transaction.atomic
def token_revoke(*, actor: User, token: ApiToken) -> None:
    _token_revoke(token=token, actor=actor, action=AuditAction.AUTH_TOKEN_REVOKE)


def session_login(*, request: HttpRequest, email: str, password: str) -> User:
    """Check the password and start a browser session for the portal pages.

    The same checks, lockout and audit as the API login; Django's `login` gives the browser a new
    session key (no fixation) and sends `user_logged_in`. Staff with a TOTP device are not signed
    in yet: the session remembers them for `accounts.otp.session_login_second_factor`, and
    `second_factor_pending(request)` is true.
    """
    from accounts import otp as second_factor  # otp builds on sessions, which builds on this

    email = normalize_email(email)
    user = authenticate(request, username=email, password=password)
    if user is None:
        if lockout.is_locked_out(request):
            _login_failed(email=email, reason="account_locked")
            raise TooManyAttempts(lockout.MESSAGE_LOCKED, lockout.LOCKED_CODE)
        _login_failed(email=email)
        raise NotAuthenticated(MESSAGE_INVALID_CREDENTIALS, "invalid_credentials")
    if second_factor.otp_device(user) is not None:
        second_factor.second_factor_await(request=request, user=user)
        return user
    return session_start(request=request, user=user)


SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def session_start(*, request: HttpRequest, user: User) -> User:
    """Start a browser session for `user`, whose identity is established already (the password
    just checked, or the account just created at sign-up); audited like every login.

    Django's `login` gives the browser a new session key (no fixation) and sends
    `user_logged_in`.
    """
    with transaction.atomic():
        # The backend that loads the user on later requests (the lockout backend only counts).
        backend = getattr(user, "backend", None) or SESSION_BACKEND
        django_login(request, user, backend=backend)
        send_event(
            action=AuditAction.AUTH_LOGIN,
            actor=user,
            object_type="session",
            subject_id=user.pk if user.role == Role.PATIENT else None,
        )
    return user


def session_logout(*, request: HttpRequest) -> None:
    """End the browser session (audited) and forget everything it held."""
    user = request.user
    if user.is_authenticated:
        with transaction.atomic():
            send_event(action=AuditAction.AUTH_LOGOUT, actor=user, object_type="session")
    django_logout(request)
