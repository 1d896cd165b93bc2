"""The patient's consents and access log."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role
from audit.models import AuditAction, Outcome
from audit.selectors import events_about
from consent import services
from consent.api import access_log_rows
from consent.forms import ConsentForm
from consent.models import RecordCategory
from consent.policy import Basis, Purpose
from patterm.errors import Conflict, InvalidInput
from patterm.web import role_required

CONSENTS_PER_PAGE = 20
EVENTS_PER_PAGE = 30
MESSAGE_GRANTED = _("Consent granted. The clinic can see these entries from now on.")
MESSAGE_REVOKED = _("Consent revoked. The clinic's access ended now.")
MESSAGE_SYSTEM = _("Patterm (automatic)")
ACTION_LABELS = dict(AuditAction.choices)
ROLE_LABELS = dict(Role.choices)
BASIS_LABELS = dict(Basis.choices)
PURPOSE_LABELS = dict(Purpose.choices)
OUTCOME_LABELS = dict(Outcome.choices)
CATEGORY_LABELS = dict(RecordCategory.choices)


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def consents(request):
    """My consents with their status, and the form to grant one (kept as typed on errors)."""
    form = ConsentForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.consent_grant(
                    patient=request.user,
                    grantee_clinic_id=data["grantee_clinic"].pk,
                    source_clinic_id=data["source_clinic"].pk if data["source_clinic"] else None,
                    categories=data["categories"],
                    valid_until=data["valid_until"],
                )
            except InvalidInput as error:
                for item in error.errors:
                    field = item.get("field")
                    form.add_error(field if field in form.fields else None, item["message"])
            else:
                messages.success(request, MESSAGE_GRANTED)
                return redirect("consent:consents")
        status = 422
    listed = services.consents_of(patient=request.user).order_by("-granted_at", "pk")
    page_obj = Paginator(listed, CONSENTS_PER_PAGE).get_page(request.GET.get("page"))
    for consent in page_obj.object_list:
        consent.category_labels = [CATEGORY_LABELS.get(c, c) for c in consent.categories]
    return render(
        request, "consent/consents.html", {"form": form, "page_obj": page_obj}, status=status
    )


@role_required(Role.PATIENT)
@require_POST
def revoke(request, consent_id):
    try:
        services.consent_revoke(patient=request.user, consent_id=consent_id)
    except Conflict as error:
        messages.error(request, error.message)
    else:
        messages.success(request, MESSAGE_REVOKED)
    return redirect("consent:consents")


@role_required(Role.PATIENT)
@require_GET
def access_log(request):
    """Who did what with my data: role and clinic (never a name), when, why, basis, outcome;
    the same rows as GET /api/patient/access-log. Emergency accesses say so in words."""
    page_obj = Paginator(events_about(patient_id=request.user.pk), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = access_log_rows(list(page_obj.object_list))
    for row in rows:
        bases = [basis for basis in row["basis"].split(",") if basis]
        row["action_label"] = ACTION_LABELS.get(row["action"], row["action"])
        row["role_label"] = ROLE_LABELS.get(row["actor"]["role"], MESSAGE_SYSTEM)
        row["basis_labels"] = [BASIS_LABELS.get(basis, basis) for basis in bases]
        row["purpose_label"] = PURPOSE_LABELS.get(row["purpose"], row["purpose"])
        row["outcome_label"] = OUTCOME_LABELS.get(row["outcome"], row["outcome"])
        row["emergency"] = Basis.EMERGENCY in bases
    return render(request, "consent/access_log.html", {"page_obj": page_obj, "rows": rows})
