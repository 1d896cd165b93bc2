"""The account security pages: the second login step, the authenticator set-up, "my sessions",
and password change and reset (Django's views and tokens, our templates and services)."""

import base64

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import otp, passwords, sessions
from accounts.forms import OtpCodeForm
from patterm.errors import DomainError, InvalidInput
from patterm.web import safe_next_url

MESSAGE_SESSION_ENDED = _("The session has been ended.")
MESSAGE_OTHERS_ENDED = _("All your other sessions have been ended.")
MESSAGE_PASSWORD_CHANGED = _("Your password has been changed. Your other sessions have been ended.")


def _form_errors(form, error: DomainError) -> None:
    if isinstance(error, InvalidInput) and error.errors:
        for item in error.errors:
            field = item["field"] if item["field"] in form.fields else None
            form.add_error(field, item["message"])
    else:
        form.add_error(None, error.message)


# --- the second login step ------------------------------------------------------------------


@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def login_code(request):
    """After the right password: the code from the authenticator app (or a recovery code)."""
    if otp.second_factor_pending(request) is None:
        return redirect("accounts:login")
    form = OtpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            otp.session_login_second_factor(request=request, code=form.cleaned_data["code"])
        except DomainError as error:
            if error.code == "otp_expired":
                messages.error(request, error.message)
                return redirect("accounts:login")
            _form_errors(form, error)
        else:
            return redirect(safe_next_url(request, reverse("start")))
    return render(
        request, "accounts/login_code.html", {"form": form, "next": safe_next_url(request, "")}
    )


# --- setting up the authenticator app ------------------------------------------------------------


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def otp_setup(request):
    """Set up (or replace) the authenticator app: QR code, first code, recovery codes once."""
    user = request.user
    verified = otp.session_verified(request)
    form = OtpCodeForm(request.POST or None)
    if request.method == "POST" and request.POST.get("action") == "start":
        otp.otp_enrolment_start(user=user, verified=verified)
        return redirect("accounts:otp_setup")
    if request.method == "POST" and form.is_valid():
        try:
            codes = otp.otp_enrolment_confirm(
                user=user,
                code=form.cleaned_data["code"],
                verified=verified,
                current_session_key=request.session.session_key,
            )
        except DomainError as error:
            _form_errors(form, error)
        else:
            otp.session_mark_verified(request)
            return render(request, "accounts/recovery_codes.html", {"codes": codes})
    enrolment = otp.otp_enrolment_pending(user=user) if otp.otp_applies_to(user) else None
    secret = base64.b32encode(enrolment.device.bin_key).decode() if enrolment else ""
    return render(
        request,
        "accounts/otp_setup.html",
        {
            "applies": otp.otp_applies_to(user),
            "has_device": otp.otp_device(user) is not None,
            "required": otp.otp_required_for(user),
            "enrolment": enrolment,
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            "form": form,
            "recovery_codes_left": otp.recovery_codes_left(user),
        },
    )


# --- my sessions ----------------------------------------------------------------------------


@login_required
@never_cache
def sessions_page(request):
    """Every live browser session and API token of the user; this browser marked."""
    entries = sessions.sessions_of(
        user=request.user, current_session_key=request.session.session_key
    )
    return render(request, "accounts/sessions.html", {"sessions": entries})


@login_required
@require_POST
def session_end(request, session_id: str):
    current = request.browser_session
    sessions.session_end(user=request.user, session_id=session_id)
    if current is not None and session_id == sessions.session_public_id(
        sessions.BROWSER, current.pk
    ):
        return redirect("home")  # this browser's own session: signed out now
    messages.success(request, MESSAGE_SESSION_ENDED)
    return redirect("accounts:sessions")


@login_required
@require_POST
def sessions_end_others(request):
    sessions.sessions_end_all(
        user=request.user,
        actor=request.user,
        reason=sessions.EndReason.LOGOUT_ALL,
        keep_session_key=request.session.session_key,
    )
    messages.success(request, MESSAGE_OTHERS_ENDED)
    return redirect("accounts:sessions")


# --- passwords --------------------------------------------------------------------------------


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:sessions")

    def form_valid(self, form):
        try:
            passwords.password_change(
                user=form.user,
                new_password=form.cleaned_data["new_password1"],
                keep_session_key=self.request.session.session_key,
                field="new_password1",
            )
        except DomainError as error:
            _form_errors(form, error)
            return self.form_invalid(form)
        update_session_auth_hash(self.request, form.user)  # the middleware moves the registry row
        messages.success(self.request, MESSAGE_PASSWORD_CHANGED)
        return redirect(self.get_success_url())


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")

    def form_valid(self, form):
        # Over the hourly limit the page looks the same, but no e-mail goes out.
        if not passwords.password_reset_allowed(email=form.cleaned_data["email"]):
            return redirect(self.get_success_url())
        return super().form_valid(form)

    @property
    def extra_email_context(self):
        # Links point at the configured public address, never at the request's Host header.
        return {"public_url": settings.PATTERM_PUBLIC_URL.rstrip("/")}


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")

    def form_valid(self, form):
        try:
            passwords.password_change(
                user=form.user,
                new_password=form.cleaned_data["new_password1"],
                via="reset",
                field="new_password1",
            )
        except DomainError as error:
            _form_errors(form, error)
            return self.form_invalid(form)
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        return redirect(self.get_success_url())


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"
