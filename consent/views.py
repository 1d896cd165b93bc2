"""The patient's consents and access log."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role
from audit.models import AuditAction, Outcome
from audit.selectors import events_about
from audit.services import patient_event_proof
from consent import services
from consent.api import access_log_rows
from consent.forms import ConsentForm
from consent.models import RecordCategory
from consent.policy import Basis, Purpose
from patterm.errors import Conflict, InvalidInput, NotFound
from patterm.numbers import MAX_ID
from patterm.web import role_required
from vault import relatives

CONSENTS_PER_PAGE = 20
EVENTS_PER_PAGE = 30
MESSAGE_GRANTED = _("Consent granted. The clinic can see these entries from now on.")
MESSAGE_REVOKED = _("Consent revoked. The clinic's access ended now.")
MESSAGE_SYSTEM = _("Patterm (automatic)")
ACTION_LABELS = dict(AuditAction.choices)
MESSAGE_HOLDER = _("Your account holder")
ROLE_LABELS = dict(Role.choices)
BASIS_LABELS = dict(Basis.choices)
PURPOSE_LABELS = dict(Purpose.choices)
OUTCOME_LABELS = dict(Outcome.choices)
CATEGORY_LABELS = dict(RecordCategory.choices)


def _whose(request, relative_id):
    """(patient, relative or None): the user themself, or the relative they manage (someone
    else's relative, or an unknown id: NotFound, the 404 page)."""
    if relative_id is None:
        return request.user, None
    relative = relatives.relative_get(holder=request.user, relative_id=relative_id)
    return relative.user, relative


def _proof_url(relative, seq: int) -> str:
    if relative is None:
        return reverse("consent:access_log_proof", kwargs={"seq": seq})
    return reverse(
        "consent:relative_access_log_proof", kwargs={"relative_id": relative.id, "seq": seq}
    )


def _back(relative, name: str):
    if relative is None:
        return redirect(f"consent:{name}")
    return redirect(f"consent:relative_{name}", relative_id=relative.id)


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def consents(request, relative_id=None):
    """My consents (or a relative's) with their status, and the form to grant one (kept as
    typed on errors)."""
    patient, relative = _whose(request, relative_id)
    form = ConsentForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.consent_grant(
                    patient=patient,
                    actor=request.user,
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
                return _back(relative, "consents")
        status = 422
    listed = services.consents_of(patient=patient).order_by("-granted_at", "pk")
    page_obj = Paginator(listed, CONSENTS_PER_PAGE).get_page(request.GET.get("page"))
    for consent in page_obj.object_list:
        consent.category_labels = [CATEGORY_LABELS.get(c, c) for c in consent.categories]
    return render(
        request,
        "consent/consents.html",
        {"form": form, "page_obj": page_obj, "relative": relative},
        status=status,
    )


@role_required(Role.PATIENT)
@require_POST
def revoke(request, consent_id, relative_id=None):
    patient, relative = _whose(request, relative_id)
    try:
        services.consent_revoke(patient=patient, actor=request.user, consent_id=consent_id)
    except Conflict as error:
        messages.error(request, error.message)
    else:
        messages.success(request, MESSAGE_REVOKED)
    return _back(relative, "consents")


@role_required(Role.PATIENT)
@require_GET
def access_log(request, relative_id=None):
    """Who did what with my data (or a relative's): role and clinic (never a name), when, why,
    basis, outcome; the same rows as GET /api/patient/access-log. Emergency accesses say so in
    words; what the account holder did for a relative says so too."""
    patient, relative = _whose(request, relative_id)
    page_obj = Paginator(events_about(patient_id=patient.pk), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = access_log_rows(list(page_obj.object_list), lambda seq: _proof_url(relative, seq))
    for row in rows:
        bases = [basis for basis in row["basis"].split(",") if basis]
        row["action_label"] = ACTION_LABELS.get(row["action"], row["action"])
        row["role_label"] = (
            MESSAGE_HOLDER
            if Basis.HOLDER in bases
            else ROLE_LABELS.get(row["actor"]["role"], MESSAGE_SYSTEM)
        )
        row["basis_labels"] = [BASIS_LABELS.get(basis, basis) for basis in bases]
        row["purpose_label"] = PURPOSE_LABELS.get(row["purpose"], row["purpose"])
        row["outcome_label"] = OUTCOME_LABELS.get(row["outcome"], row["outcome"])
        row["emergency"] = Basis.EMERGENCY in bases
    return render(
        request,
        "consent/access_log.html",
        {"page_obj": page_obj, "rows": rows, "relative": relative},
    )


@role_required(Role.PATIENT)
@require_GET
def access_log_proof(request, seq, relative_id=None):
    """One entry of my access log (or a relative's) as a file: its inclusion proof against the
    latest signed checkpoint, what `verify_export.py --inclusion` and the Go checker read. Not
    in a checkpoint yet: the error page says so (422); someone else's entry: 404."""
    patient, _relative = _whose(request, relative_id)
    if seq > MAX_ID:
        raise NotFound()
    document = patient_event_proof(patient_id=patient.pk, seq=seq)
    response = JsonResponse(document, json_dumps_params={"ensure_ascii": False, "indent": 2})
    response["Content-Disposition"] = f'attachment; filename="patterm-proof-{seq}.json"'
    return response
