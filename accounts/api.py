"""The accounts part of the JSON API: sign-up, login, logout, the current user."""

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from ninja import Router, Status

from accounts import services
from accounts.models import Role, User
from accounts.schemas import LoginIn, MeIn, RegisterIn, TokenOut, UserOut
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
    return {"token": issued.raw, "expires_at": issued.expires_at, "user": user_out(issued.user)}


@router.post("/auth/register/patient", response={201: TokenOut}, auth=None)
def register_patient(request, payload: RegisterIn):
    """Create a patient account; answers with a first API token (shown only here)."""
    fields = payload.dict()
    if not fields["language"]:  # the request's language (Accept-Language), else German
        spoken = translation.get_language()
        fields["language"] = spoken if spoken in dict(settings.LANGUAGES) else "de"
    issued = patient_register(**fields, client=_client(request))
    return Status(201, _token_out(issued))


@router.post("/auth/login", response=TokenOut, auth=None)
def login(request, payload: LoginIn):
    """Exchange e-mail and password for an API token."""
    issued = services.login(email=payload.email, password=payload.password, client=_client(request))
    return _token_out(issued)


@router.post("/auth/logout", response={204: None})
def logout(request):
    """Revoke the token of this request."""
    services.logout(token=request.api_token)
    return Status(204, None)


@router.get("/me", response=UserOut)
def me(request):
    return user_out(request.user)


@router.patch("/me", response=UserOut)
def me_change(request, payload: MeIn):
    """Change what the user may change of their account: the language of Patterm's e-mails."""
    services.user_language_set(user=request.user, language=payload.language)
    return user_out(request.user)
