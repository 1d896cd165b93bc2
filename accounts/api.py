"""The accounts part of the JSON API: sign-up, login, logout, the current user."""

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from ninja import Router, Status

from accounts import otp, passwords, services, sessions
from accounts.auth import BearerTokenAuth
from accounts.models import Role, User
from accounts.schemas import (
    LoginIn,
    LogoutAllOut,
    MeIn,
    OtpConfirmIn,
    OtpEnrolmentOut,
    PasswordChangeIn,
    RecoveryCodesOut,
    RegisterIn,
    SessionOut,
    TokenOut,
    UserOut,
)
from patterm.openapi import errors
from vault.services import patient_profile_get, patient_register

router = Router(tags=["accounts"])


def _client(request: HttpRequest) -> services.ClientInfo:
    return services.ClientInfo(
        address=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""),
    )


def user_out(user: User) -> dict:
    """The User shape of API.md; a patient's names come decrypted from their profile."""
    first_name, last_name = user.first_name, user.last_name
    if user.role == Role.PATIENT and (profile := patient_profile_get(patient=user)):
        first_name, last_name = profile.first_name, profile.last_name
    memberships = user.memberships.select_related("clinic").order_by("clinic__name")
    return {
        "id": user.pk,
        "email": user.email,
        "role": user.role,
        "first_name": first_name,
        "last_name": last_name,
        "language": user.language,
        "memberships": [{"clinic": m.clinic, "role": m.role} for m in memberships],
    }


def _token_out(issued: services.IssuedToken) -> dict:
    return {
        "token": issued.raw,
        "expires_at": issued.expires_at,
        "scope": issued.token.scope or None,
        "user": user_out(issued.user),
    }


@router.post(
    "/auth/register/patient",
    response={201: TokenOut},
    auth=None,
    openapi_extra=errors(**{"409": "`email_taken`: an account with this address exists."}),
)
def register_patient(request, payload: RegisterIn):
    """Create a patient account; answers with a first API token (shown only here)."""
    fields = payload.dict()
    if not fields["language"]:  # the request's language (Accept-Language), else German
        spoken = translation.get_language()
        fields["language"] = spoken if spoken in dict(settings.LANGUAGES) else "de"
    issued = patient_register(**fields, client=_client(request))
    return Status(201, _token_out(issued))


@router.post(
    "/auth/login",
    response=TokenOut,
    auth=None,
    openapi_extra=errors(429, **{"401": "Wrong e-mail address or password."}),
)
def login(request, payload: LoginIn):
    """Exchange e-mail and password (and `otp`, once a second factor is set up) for a token.

    401 `invalid_credentials`, `otp_required` or `otp_invalid`; 429 `account_locked` after 10
    failures for the account within 15 minutes, even with the right password.
    """
    issued = services.login(
        email=payload.email,
        password=payload.password,
        otp=payload.otp,
        client=_client(request),
        request=request,
        scope=payload.scope,
    )
    return _token_out(issued)


@router.post("/auth/logout", response={204: None}, auth=BearerTokenAuth(allow_scoped=True))
def logout(request):
    """Revoke the token of this request (a FHIR token's too)."""
    services.logout(token=request.api_token)
    return Status(204, None)


@router.get("/auth/sessions", response=list[SessionOut])
def sessions_list(request):
    """Every live browser session and API token of the user, `current` marking this one."""
    return sessions.sessions_of(user=request.user, current_token_id=request.api_token.pk)


@router.delete("/auth/sessions/{session_id}", response={204: None})
def session_end(request, session_id: str):
    """End one session or token of the user (another user's id answers 404)."""
    sessions.session_end(user=request.user, session_id=session_id)
    return Status(204, None)


@router.post("/auth/logout-all", response=LogoutAllOut)
def logout_all(request):
    """End every session and token of the user, this one included."""
    ended = sessions.sessions_end_all(
        user=request.user, actor=request.user, reason=sessions.EndReason.LOGOUT_ALL
    )
    return {"ended": ended}


@router.post("/auth/password", response={204: None})
def password_change(request, payload: PasswordChangeIn):
    """Change the password; every other session and token of the user ends."""
    passwords.password_change(
        user=request.user,
        current_password=payload.current_password,
        new_password=payload.new_password,
        keep_token_id=request.api_token.pk,
    )
    return Status(204, None)


@router.post("/auth/otp/enrolment", response={201: OtpEnrolmentOut})
def otp_enrolment_start(request):
    """Start setting up an authenticator app (staff): its otpauth URI and QR code (SVG)."""
    enrolment = otp.otp_enrolment_start(user=request.user, verified=request.api_token.otp_verified)
    return Status(201, {"otpauth_uri": enrolment.otpauth_uri, "qr_svg": enrolment.qr_svg})


@router.post("/auth/otp/confirm", response=RecoveryCodesOut)
def otp_enrolment_confirm(request, payload: OtpConfirmIn):
    """Confirm the app with its first code; answers the recovery codes, shown only here."""
    codes = otp.otp_enrolment_confirm(
        user=request.user,
        code=payload.otp,
        verified=request.api_token.otp_verified,
        current_token=request.api_token,
    )
    return {"recovery_codes": codes}


@router.get("/me", response=UserOut)
def me(request):
    return user_out(request.user)


@router.patch("/me", response=UserOut)
def me_change(request, payload: MeIn):
    """Change what the user may change of their account: the language of Patterm's e-mails."""
    services.user_language_set(user=request.user, language=payload.language)
    return user_out(request.user)
