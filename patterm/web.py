"""What every portal page shares: who may open it, and how a domain error becomes a page.

Views stay thin: they check the role with `role_required`, validate a form, call one service and
render or redirect. A `DomainError` a view does not handle itself is turned into a page here,
once, with the same status and code as the API would answer (API.md): 404 for missing and
forbidden objects alike, 403 for a wrong role, a login redirect for no session.
"""

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from patterm.errors import STATUS_CODES, DomainError, NotAuthenticated
from patterm.middleware import API_PREFIX

MESSAGE_WRONG_ROLE = _("This page is not available for your account.")

ERROR_TITLES = {
    400: _("The request could not be processed"),
    403: _("Access denied"),
    404: _("Page not found"),
    409: _("That did not work"),
    422: _("Please check your input"),
    429: _("Too many attempts"),
}


def error_page(request, *, status: int, message, code: str | None = None):
    """The one HTML error page: a title, a message, the machine code; never request data."""
    return render(
        request,
        "error.html",
        {
            "status": status,
            "title": ERROR_TITLES.get(status, ERROR_TITLES[400]),
            "message": message,
            "code": code or STATUS_CODES.get(status, "error"),
        },
        status=status,
    )


def role_required(*roles: str):
    """Only signed-in users with one of `roles` open the page; others see a 403 page."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if request.user.role not in roles:
                return error_page(
                    request, status=403, message=MESSAGE_WRONG_ROLE, code="wrong_role"
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def safe_next_url(request, default: str) -> str:
    """The `next` parameter when it points into this site, else `default` (no open redirect)."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


class PageErrorsMiddleware:
    """A `DomainError` escaping a page view becomes the error page with its status.

    API paths are left alone: ninja maps the same errors to JSON (patterm/api.py).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if request.path.startswith(API_PREFIX) or not isinstance(exception, DomainError):
            return None
        if isinstance(exception, NotAuthenticated):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return error_page(
            request, status=exception.status, message=exception.message, code=exception.code
        )


def page_not_found(request, exception=None):
    return error_page(request, status=404, message=_("There is nothing at this address."))


def permission_denied(request, exception=None):
    return error_page(request, status=403, message=MESSAGE_WRONG_ROLE, code="forbidden")


def bad_request(request, exception=None):
    return error_page(request, status=400, message=_("The request could not be processed."))
