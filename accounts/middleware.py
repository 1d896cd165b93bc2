"""Browser sessions: only a registered, live session stays signed in; staff gate for pages."""

from django.contrib.auth import logout
from django.shortcuts import render

from accounts import otp
from accounts.sessions import browser_session_live, browser_session_rekey
from patterm.errors import Forbidden


class BrowserSessionMiddleware:
    """Log out a signed-in browser whose session is not (or no longer) in the registry.

    A session ended from "my sessions", by logout-all, a password change or a role removal has
    lost its row (or its Django session); one idle for PATTERM_SESSION_IDLE_TIMEOUT or older than
    PATTERM_SESSION_MAX_AGE ends here. Staff without a verified second factor, when one is
    required, get 403 on PATTERM_OTP_PROTECTED_PATHS outside the API (the API checks its own).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.browser_session = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            entry = browser_session_live(session_key=request.session.session_key or "", user=user)
            if entry is None:
                logout(request)
            else:
                request.browser_session = entry
                if not request.path.startswith("/api/"):
                    try:
                        otp.otp_gate(
                            user=user, path=request.path, verified=otp.session_verified(request)
                        )
                    except Forbidden as refused:
                        return render(
                            request,
                            "accounts/otp_required.html",
                            {"message": refused.message, "code": refused.code},
                            status=403,
                        )
        response = self.get_response(request)
        # Django gave the session a new key without a new login (update_session_auth_hash after
        # a password change, also in the admin): the registry row follows the session.
        entry = request.browser_session
        if entry is not None and getattr(request.user, "pk", None) == entry.user_id:
            session_key = request.session.session_key
            if session_key and session_key != entry.session_id:
                browser_session_rekey(entry=entry, session_key=session_key)
        return response
