"""The patient's sign-up and their own record."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Role
from accounts.services import session_logout, session_start
from consent.models import RecordCategory
from patterm.errors import Conflict, DomainError, InvalidInput
from patterm.web import error_page, role_required, safe_next_url
from vault import relatives, services
from vault.forms import SignupForm, TakeoverForm

ENTRIES_PER_PAGE = 50
MESSAGE_WELCOME = _("Welcome to Patterm. Your account is ready and you are logged in.")
MESSAGE_TAKEN_OVER = _(
    "Your record is yours now: you are logged in with your own account, and nobody else "
    "manages it any more."
)
CATEGORY_ORDER = {value: index for index, value in enumerate(RecordCategory.values)}


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def signup(request):
    """A patient signs up and is logged in at once; the service's refusals (a weak password,
    an address already registered) appear next to their fields."""
    if request.user.is_authenticated:
        return redirect("start")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.patient_register_session(
                request=request, language=_language(request), **form.cleaned_data
            )
        except InvalidInput as error:
            for item in error.errors:
                field = item.get("field")
                form.add_error(field if field in form.fields else None, item["message"])
        except Conflict as error:
            form.add_error("email" if error.code == "email_taken" else None, error.message)
        else:
            messages.success(request, MESSAGE_WELCOME)
            return redirect(safe_next_url(request, reverse("start")))
    return render(request, "vault/signup.html", {"form": form, "next": safe_next_url(request, "")})


def _language(request) -> str:
    """The page's language becomes the account's language for e-mails."""
    code = (getattr(request, "LANGUAGE_CODE", "") or "de")[:2]
    return code if code in dict(settings.LANGUAGES) else "de"


@role_required(Role.PATIENT)
@require_GET
def record(request):
    """My record: the profile and every entry by category, with its author and clinic. Read
    through the same service as GET /api/patient/record, so it is audited the same way."""
    profile, read = services.own_record_read(patient=request.user)
    entries = sorted(read.entries, key=lambda e: (CATEGORY_ORDER.get(e.category, 99),))
    page_obj = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "vault/record.html", {"profile": profile, "page_obj": page_obj})


@sensitive_post_parameters("password", "password_repeat")
@never_cache
@require_http_methods(["GET", "POST"])
def relative_takeover(request, token: str):
    """The invitation link: the relative chooses a password and takes over their record; the
    holder's access ends now. Signed in afterwards. An expired or replaced link says so."""
    try:
        relatives.invitation_open(token=token)
    except DomainError as error:
        return error_page(request, status=error.status, message=error.message, code=error.code)
    form = TakeoverForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                account = relatives.relative_takeover(
                    token=token, password=form.cleaned_data["password"]
                )
            except InvalidInput as error:
                for item in error.errors:
                    field = item.get("field")
                    form.add_error(field if field in form.fields else None, item["message"])
            except Conflict as error:
                form.add_error(None, error.message)
            else:
                if request.user.is_authenticated:  # the holder's browser: not theirs any more
                    session_logout(request=request)
                session_start(request=request, user=account)
                messages.success(request, MESSAGE_TAKEN_OVER)
                return redirect("vault:record")
        status = 422
    return render(request, "vault/relative_takeover.html", {"form": form}, status=status)
