"""django-axes hooks: which account and address an attempt counts against, and the lockout answer.

Failures are counted per account and per account + address (AXES_LOCKOUT_PARAMETERS), never per
address alone. A locked account refuses even the right password until the cool-off has passed
or an operator runs `manage.py axes_reset_username EMAIL` (docs/operations.md).
"""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from accounts.models import User, normalize_email

API_PREFIX = "/api/"  # patterm.middleware.API_PREFIX; accounts sits below patterm

LOCKED_STATUS = 429
LOCKED_CODE = "account_locked"
# The same words whether or not the account exists: unknown addresses are counted and locked too.
MESSAGE_LOCKED = _(
    "Too many failed sign-in attempts for this account. Try again in 15 minutes or ask the "
    "practice team to unlock it."
)


def username_of(request: HttpRequest, credentials: dict | None) -> str:
    """The account an attempt counts against: the e-mail in its one stored spelling."""
    credentials = credentials or {}
    return normalize_email(credentials.get("username") or credentials.get("email") or "")


def address_of(request: HttpRequest) -> str | None:
    """The client address, as the TLS proxy hands it over in REMOTE_ADDR (docs/deployment.md)."""
    return request.META.get("REMOTE_ADDR") or None


def is_locked_out(request: HttpRequest | None) -> bool:
    """Whether the last authenticate() on this request met (or made) a lockout."""
    return bool(getattr(request, "axes_locked_out", False))


def attempts_reset(*, request: HttpRequest, user: User) -> None:
    """Forget the failures of a login that succeeded without a Django session (the API's).

    A browser login resets them through `user_logged_in`, which Axes listens to.
    """
    from axes.handlers.proxy import AxesProxyHandler

    AxesProxyHandler.user_logged_in(sender=None, request=request, user=user)


def lockout_response(request: HttpRequest, original_response=None, credentials=None):
    """AxesMiddleware's answer to a locked attempt: the API's JSON error, or the login page.

    The API login already raised `AccountLocked` (same status, code and message); this keeps
    Axes from replacing that answer with its own text.
    """
    if request.path.startswith(API_PREFIX):
        if isinstance(original_response, HttpResponse) and (
            original_response.status_code == LOCKED_STATUS
        ):
            return original_response
        return JsonResponse(
            {"detail": str(MESSAGE_LOCKED), "code": LOCKED_CODE}, status=LOCKED_STATUS
        )
    if isinstance(original_response, HttpResponse) and original_response.status_code in (
        200,
        LOCKED_STATUS,
    ):
        # The login page re-rendered with its form error: keep it, with the lockout status.
        original_response.status_code = LOCKED_STATUS
        return original_response
    return render(
        request, "accounts/locked.html", {"message": MESSAGE_LOCKED}, status=LOCKED_STATUS
    )
