"""Staff pages of the vault: a patient's record for a practitioner (through the consent policy,
audited like the API's read), writing an entry, declaring emergency access, and the clinic
admin's review of emergency accesses."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from accounts.models import Role
from patterm.errors import InvalidInput, NotFound
from patterm.staff import form_errors_add
from patterm.web import role_required
from vault import services
from vault.keys import data_keys_preload
from vault.staff_forms import EmergencyForm, EntryForm, PatientLookupForm

PER_PAGE = 25


@role_required(Role.PRACTITIONER)
def patient_lookup(request):
    """Open a record by patient number (a patient of another clinic: emergency access)."""
    form = PatientLookupForm(request.GET or None)
    if request.GET and form.is_valid():
        return redirect("vault_staff:record", patient_id=form.cleaned_data["patient"])
    return render(request, "vault/staff/patient_lookup.html", {"form": form})


def _record_page(request, patient_id: int, *, entry_form, status=200):
    """The record as the practitioner may see it (one audited read), or a 404 that offers
    emergency access and says nothing of whether the patient exists."""
    try:
        patient, record = services.practitioner_record_read(
            actor=request.user, patient_id=patient_id
        )
    except NotFound:
        return render(
            request, "vault/staff/record_not_found.html", {"patient_id": patient_id}, status=404
        )
    return render(
        request,
        "vault/staff/record.html",
        {"patient": patient, "record": record, "form": entry_form},
        status=status,
    )


@role_required(*Role.values)
def record(request, patient_id: int):
    """Any signed-in role reaches the service: a role that may never read records is refused
    there, and that refusal is audited as the API's is."""
    return _record_page(request, patient_id, entry_form=EntryForm())


@require_POST
@role_required(Role.PRACTITIONER)
def entry_write(request, patient_id: int):
    """Write an entry (the service of POST /api/medical/patients/{id}/entries)."""
    form = EntryForm(request.POST)
    if form.is_valid():
        try:
            services.practitioner_entry_write(
                actor=request.user, patient_id=patient_id, **form.cleaned_data
            )
        except InvalidInput as error:
            form_errors_add(form, error)
        else:
            messages.success(request, _("The entry was saved."))
            return redirect("vault_staff:record", patient_id=patient_id)
    return _record_page(request, patient_id, entry_form=form, status=422)


@role_required(Role.PRACTITIONER)
def emergency_access(request, patient_id: int):
    """Declare emergency access (the service of POST .../emergency-access)."""
    form = EmergencyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            access = services.emergency_access_declare(
                actor=request.user,
                patient_id=patient_id,
                justification=form.cleaned_data["justification"],
            )
        except InvalidInput as error:
            form_errors_add(form, error)
        else:
            end = formats.date_format(timezone.localtime(access.expires_at), "DATETIME_FORMAT")
            messages.warning(
                request,
                _("Emergency access declared. It ends %(end)s.") % {"end": end},
            )
            return redirect("vault_staff:record", patient_id=patient_id)
    return render(
        request, "vault/staff/emergency_access.html", {"form": form, "patient_id": patient_id}
    )


def _review_rows(accesses: list) -> list:
    data_keys_preload({access.patient_id for access in accesses})
    now = timezone.now()
    for access in accesses:
        access.active = access.expires_at > now
    return accesses


@role_required(Role.CLINIC_ADMIN)
def emergency_review(request):
    """The emergency accesses of the admin's clinics, with justification, newest first."""
    page_obj = Paginator(
        services.emergency_accesses_for_review(actor=request.user), PER_PAGE
    ).get_page(request.GET.get("page"))
    page_obj.object_list = _review_rows(list(page_obj.object_list))
    return render(request, "vault/staff/emergency_review.html", {"page_obj": page_obj})
