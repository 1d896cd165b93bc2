"""The patient's sign-up and their own record."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role
from accounts.services import session_logout, session_start
from booking.services import appointments_of, cancellation_deadline, patient_may_cancel
from consent.models import RecordCategory
from patterm.errors import Conflict, DomainError, InvalidInput
from patterm.web import error_page, role_required, safe_next_url
from vault import relatives, services
from vault.api import export_response
from vault.forms import InvitationForm, RelativeForm, SignupForm, TakeoverForm

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


# --- Relatives (decision 0014) --------------------------------------------------------------

MESSAGE_RELATIVE_ADDED = _(
    "%(name)s is added. You can now book appointments, manage consents and see the record for them."
)
MESSAGE_INVITED = _(
    "The invitation is on its way to %(email)s. Once your relative has chosen a password, the "
    "record is theirs alone and you no longer see it."
)


def _service_errors_to_form(form, error: InvalidInput) -> None:
    for item in error.errors:
        field = item.get("field")
        form.add_error(field if field in form.fields else None, item["message"])


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def relatives_page(request):
    """My relatives: each with links to what I do for them, a note for those old enough to
    take over, and the form to add one (kept as typed on errors)."""
    form = RelativeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                added = relatives.relative_add(holder=request.user, **form.cleaned_data)
            except InvalidInput as error:
                _service_errors_to_form(form, error)
            except Conflict as error:
                form.add_error(None, error.message)
            else:
                name = f"{added.profile.first_name} {added.profile.last_name}"
                messages.success(request, MESSAGE_RELATIVE_ADDED % {"name": name})
                return redirect("vault:relative", relative_id=added.id)
        status = 422
    return render(
        request,
        "vault/relatives.html",
        {
            "form": form,
            "relatives": relatives.relatives_of(holder=request.user),
            "own_account_age": settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE,
        },
        status=status,
    )


@role_required(Role.PATIENT)
@require_GET
def relative_page(request, relative_id: int):
    """One relative: profile, upcoming appointments, the record (read on the holder basis,
    audited) and the way to the consents, access log, export and takeover invitation."""
    found, read = relatives.relative_record_read(holder=request.user, relative_id=relative_id)
    entries = sorted(read.entries, key=lambda e: (CATEGORY_ORDER.get(e.category, 99),))
    page_obj = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    upcoming = [
        {
            "appointment": appointment,
            "may_cancel": patient_may_cancel(appointment),
            "deadline": cancellation_deadline(appointment),
        }
        for appointment in appointments_of(patient=found.user, upcoming=True)[:20]
    ]
    return render(
        request,
        "vault/relative.html",
        {
            "relative": found,
            "page_obj": page_obj,
            "upcoming": upcoming,
            "invitation_form": InvitationForm(),
            "own_account_age": settings.PATTERM_RELATIVE_OWN_ACCOUNT_AGE,
            "invitation_days": settings.PATTERM_RELATIVE_INVITATION_DAYS,
        },
    )


@role_required(Role.PATIENT)
@require_POST
def relative_invite(request, relative_id: int):
    """Send the takeover invitation (the same service as POST /api/relatives/{id}/invitation);
    a refusal shows on the relative's page."""
    found = relatives.relative_get(holder=request.user, relative_id=relative_id)
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            relatives.relative_invite(
                holder=request.user, relative_id=found.id, email=form.cleaned_data["email"]
            )
        except InvalidInput as error:
            _service_errors_to_form(form, error)
        except Conflict as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, MESSAGE_INVITED % {"email": form.cleaned_data["email"]})
            return redirect("vault:relative", relative_id=found.id)
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, error)
    return redirect("vault:relative", relative_id=found.id)


@role_required(Role.PATIENT)
@require_GET
def relative_export(request, relative_id: int, format: str):
    """The same download as GET /api/relatives/{id}/export."""
    found = relatives.relative_get(holder=request.user, relative_id=relative_id)
    return export_response(patient=found.user, format=format, actor=request.user)
