"""The patient's booking pages: search, book, my appointments, cancel, the waitlist offer the
e-mail links to (confirmed or declined with a POST form); and the record's export and erasure
request (their services live here and above: booking.services.erasure_request,
vault.api.export_response)."""

import datetime

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Role
from accounts.services import session_logout
from booking import search as practitioner_search
from booking import services, waitlist
from booking.api import ics_response
from booking.forms import BookMotiveForm, ErasureForm, SearchForm, WaitlistJoinForm
from booking.models import AppointmentStatus, OfferStatus
from patterm.errors import Conflict, DomainError, InvalidInput
from patterm.numbers import ascii_int
from patterm.staff import form_errors_add
from patterm.web import role_required, safe_next_url
from vault import relatives
from vault.api import export_response
from vault.forms import InsuranceForm
from vault.insurance import patient_insurance_update
from vault.services import erasure_retention_date

PRACTITIONERS_PER_PAGE = 10
APPOINTMENTS_PER_PAGE = 20
WAITLIST_PER_PAGE = 20

MESSAGE_BOOKED = _("Your appointment is booked. A confirmation is on its way by e-mail.")
MESSAGE_CONFIRMED = MESSAGE_BOOKED
MESSAGE_DECLINED = _("The slot goes to the next patient waiting. You stay on the waitlist.")
MESSAGE_CANCELLED = _("Your appointment is cancelled. The time is free for others again.")
MESSAGE_MOVED = _(
    "Your appointment is moved. A confirmation with the updated calendar file is on its way "
    "by e-mail."
)
MESSAGE_WAITLIST_JOINED = _(
    "You are on the waitlist. When a matching slot becomes free, we offer it to you by e-mail."
)
MESSAGE_WAITLIST_LEFT = _("You have left this waitlist.")
MESSAGE_ERASURE_FILED = _(
    "Your account is closed and you are logged out. Your medical record is kept until "
    "%(date)s (legal retention period), then erased."
)


def _week_start(form) -> datetime.date:
    day = form.cleaned_data.get("date") if form.is_bound and form.is_valid() else None
    return max(day or timezone.localdate(), timezone.localdate())


def _profile_insurance(user) -> str | None:
    if user.is_authenticated and user.role == Role.PATIENT:
        profile = services.patient_profile_get(patient=user)
        return profile.insurance_type if profile else None
    return None


@require_GET
def search(request):
    """The start page: practitioners offering the specialty as cards, each with a week of
    start times where its visit motive fits, paged by practitioner (booking/search.py)."""
    signed_in_patient = request.user.is_authenticated and request.user.role == Role.PATIENT
    form = SearchForm(request.GET or None, ask_known=not signed_in_patient)
    page_obj = cards = None
    first_day = _week_start(form)
    if not form.is_bound or form.is_valid():
        filters = form.cleaned_data if form.is_bound else {}
        insurance = filters.get("insurance_type") or _profile_insurance(request.user)
        status = filters.get("patient_status")
        known = None if not status else status == "known"
        found = practitioner_search.practitioners_found(
            specialty=filters.get("specialty") or None,
            city=filters.get("city") or None,
            insurance_type=insurance,
            known=known,
        )
        page_obj = Paginator(found, PRACTITIONERS_PER_PAGE).get_page(request.GET.get("page"))
        cards = practitioner_search.cards_build(
            list(page_obj.object_list),
            specialty=filters.get("specialty") or None,
            insurance_type=insurance,
            known=known,
            patient=request.user,
            first_day=first_day,
        )
    return render(
        request,
        "booking/search.html",
        {
            "form": form,
            "page_obj": page_obj,
            "cards": cards,
            **_week_links(request, first_day),
        },
    )


def _week_links(request, first_day: datetime.date) -> dict:
    """The query strings of the week before and after (the other filters kept; page 1)."""
    links = {}
    for name, day in (
        ("previous_week", first_day - datetime.timedelta(days=7)),
        ("next_week", first_day + datetime.timedelta(days=7)),
    ):
        query = request.GET.copy()
        query.pop("page", None)
        query["date"] = day.isoformat()
        links[name] = query.urlencode() if day >= timezone.localdate() else None
    kept = request.GET.copy()
    for name in ("page", "date"):
        kept.pop(name, None)
    kept_query = kept.urlencode()
    return {
        "first_day": first_day,
        "next_free_query": kept_query + "&" if kept_query else "",
        **links,
    }


@require_GET
def practitioner(request, membership_id: int):
    """A practitioner's page: clinic, address, specialties, visit motives (with their notes)
    and a week of free times for the chosen motive (`?motive=`)."""
    membership = practitioner_search.practitioner_get(membership_id=membership_id)
    form = SearchForm(request.GET or None, ask_known=False)
    first_day = _week_start(form)
    chosen = request.GET.get("motive")
    (card,) = practitioner_search.cards_build(
        [membership],
        specialty=None,
        insurance_type=None,
        known=None,
        patient=request.user,
        first_day=first_day,
        chosen_motive=ascii_int(chosen) if chosen else None,
    )
    return render(
        request,
        "booking/practitioner.html",
        {"membership": membership, "card": card, **_week_links(request, first_day)},
    )


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def book(request, slot_id: str):
    """Book one slot, or with `?motive=` the consecutive slots the visit motive needs, with
    an optional reason (and the insurance type when the motive is not open to all). A slot
    gone in the meantime is a clear message with the way back to the search, not an error
    page; a motive's rule broken is an error next to its field."""
    slot = services.slot_for_booking(slot_id=slot_id)
    motive = _motive_of(request, slot)
    insurance = _profile_insurance(request.user)
    ask_insurance = motive is not None and len(motive.accepted_insurance_types) < 3
    held = relatives.relatives_of(holder=request.user)
    form = BookMotiveForm(
        request.POST if request.method == "POST" else None,
        ask_insurance=ask_insurance,
        initial={"insurance_type": insurance or "", "for_whom": request.GET.get("for", "")},
        relatives=held,
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        for_whom = form.cleaned_data.get("for_whom")
        patient = (
            relatives.relative_get(holder=request.user, relative_id=for_whom).user
            if for_whom
            else request.user
        )
        try:
            appointment = services.appointment_book(
                patient=patient,
                actor=request.user,
                slot_id=slot_id,
                reason=form.cleaned_data["reason"],
                motive_id=motive.pk if motive else None,
                insurance_type=form.cleaned_data.get("insurance_type") or None,
            )
        except Conflict as error:
            form.add_error(None, error.message)
            status = 409
        except services.MotiveRefused as error:
            for item in error.errors:
                field = item["field"] if item["field"] in form.fields else None
                form.add_error(field, item["message"])
            status = 422
        else:
            messages.success(request, MESSAGE_BOOKED)
            return redirect("booking:appointment", appointment_id=appointment.pk)
    return render(
        request,
        "booking/book.html",
        {
            "slot": slot,
            "motive": motive,
            "form": form,
            "bookable": services.slot_is_bookable(slot, patient=request.user),
        },
        status=status,
    )


def _motive_of(request, slot):
    """The motive of `?motive=` if it is one of the slot's practitioner's there, else None."""
    raw = request.GET.get("motive", "")
    motive_id = ascii_int(raw)
    if motive_id is None:
        return None
    return (
        services.motives_bookable(practitioner_id=slot.practitioner_id, clinic_id=slot.clinic_id)
        .filter(pk=motive_id)
        .first()
    )


def _with_cancellation(appointments) -> list[dict]:
    now = timezone.now()
    return [
        {
            "appointment": appointment,
            "may_cancel": services.patient_may_cancel(appointment, now=now),
            "deadline": services.cancellation_deadline(appointment),
        }
        for appointment in appointments
    ]


@role_required(Role.PATIENT)
@require_GET
def appointments(request):
    """My appointments, or a relative's (`?for=<id>`, decision 0014): upcoming (soonest first)
    or past (latest first), paginated."""
    past = request.GET.get("when") == "past"
    held = relatives.relatives_of(holder=request.user)
    chosen = None
    if request.GET.get("for"):
        chosen = relatives.relative_get(holder=request.user, relative_id=request.GET["for"])
    patient = chosen.user if chosen else request.user
    listed = services.appointments_of(patient=patient, upcoming=not past)
    page_obj = Paginator(listed, APPOINTMENTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "booking/appointments.html",
        {
            "page_obj": page_obj,
            "rows": _with_cancellation(page_obj.object_list),
            "past": past,
            "relatives": held,
            "chosen": chosen,
        },
    )


@role_required(Role.PATIENT)
@require_GET
def appointment(request, appointment_id):
    """One appointment: the confirmation after booking, "add to calendar", cancel."""
    found = services.own_appointment_get(patient=request.user, appointment_id=appointment_id)
    (row,) = _with_cancellation([found])
    # A relative's appointment (the holder booked it): say for whom, from the snapshot.
    row["for_relative"] = found.patient_id != request.user.pk
    return render(request, "booking/appointment.html", row)


@role_required(Role.PATIENT)
@require_GET
def ics(request, appointment_id):
    """The same download as GET /api/appointments/{id}/ics."""
    return ics_response(
        services.own_appointment_get(patient=request.user, appointment_id=appointment_id)
    )


@role_required(Role.PATIENT)
@require_POST
def cancel(request, appointment_id):
    """Cancel until the clinic's cut-off; the service decides, a refusal is a message."""
    detail = reverse("booking:appointment", kwargs={"appointment_id": appointment_id})
    try:
        services.appointment_cancel(actor=request.user, appointment_id=appointment_id)
    except Conflict as error:
        messages.error(request, error.message)
        return redirect(detail)
    messages.success(request, MESSAGE_CANCELLED)
    return redirect(safe_next_url(request, reverse("booking:appointments")))


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def move(request, appointment_id):
    """Move to another free time of the same practitioner and visit motive (decision 0021):
    the times listed by day, one chosen with a POST; a refusal is explained on the page with
    its status (a time taken meanwhile: 409). Someone else's appointment: 404."""
    return move_page(
        request,
        appointment_of=lambda pk: services.own_appointment_get(
            patient=request.user, appointment_id=pk
        ),
        appointment_id=appointment_id,
        by_clinic=False,
        done_url=reverse("booking:appointment", kwargs={"appointment_id": appointment_id}),
        done_message=MESSAGE_MOVED,
    )


def move_page(
    request, *, appointment_of, appointment_id, by_clinic: bool, done_url, done_message, **context
):
    """The move page of the patient and of the practice (booking/move.html): GET lists the
    free times by day, POST moves there and redirects to `done_url`, a refusal is shown with
    its status. `appointment_of(pk)` finds the appointment for this viewer or raises NotFound.
    The practice (`by_clinic`) is held to no cut-off and sees offline motives' times."""
    found = appointment_of(appointment_id)
    refusal, status = None, 200
    if request.method == "POST":
        try:
            services.appointment_move(
                actor=request.user,
                appointment_id=found.pk,
                slot_id=request.POST.get("slot_id", "")[:40],
            )
        except DomainError as error:
            refusal, status = error.message, error.status
        else:
            messages.success(request, done_message)
            return redirect(done_url)
        found = appointment_of(found.pk)
    movable = by_clinic or services.patient_may_cancel(found)
    days: dict[datetime.date, list] = {}
    if movable and found.status == AppointmentStatus.BOOKED:
        for slot in services.move_targets(found, by_clinic=by_clinic):
            days.setdefault(timezone.localdate(slot.starts_at), []).append(slot)
    context |= {
        "appointment": found,
        "movable": movable,
        "by_clinic": by_clinic,
        "days": sorted(days.items()),
        "refusal": refusal,
        # Staff always see whose appointment it is; a holder, for whom.
        "for_relative": by_clinic or found.patient_id != request.user.pk,
    }
    return render(request, "booking/move.html", context, status=status)


# --- The waitlist offer --------------------------------------------------------------------


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def waitlist_offer(request, offer_id):
    """The offer (someone else's: 404). POST `action=confirm` books it, `action=decline`
    passes it on; a closed or expired offer shows why."""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "confirm":
                waitlist.offer_confirm(patient=request.user, offer_id=offer_id)
                messages.success(request, MESSAGE_CONFIRMED)
            elif action == "decline":
                waitlist.offer_decline(patient=request.user, offer_id=offer_id)
                messages.info(request, MESSAGE_DECLINED)
        except DomainError as error:
            if error.status == 404:
                raise
            messages.error(request, error.message)
        return redirect("booking:waitlist_offer", offer_id=offer_id)
    offer = waitlist.offer_get(patient=request.user, offer_id=offer_id)
    return render(
        request,
        "booking/waitlist_offer.html",
        {"offer": offer, "slot": offer.slot, "is_open": offer.status == OfferStatus.OPEN},
    )


# --- My waitlist ----------------------------------------------------------------------------


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def waitlist_page(request):
    """My waitlist: join (the same service as POST /api/waitlist; a rule broken is an error
    next to its field, the limit a form error) and the entries still waiting, each with its
    open offer, paginated."""
    form = WaitlistJoinForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                waitlist.waitlist_join(
                    patient=request.user,
                    specialty=data["specialty"],
                    city=data["city"],
                    clinic_id=data["clinic"],
                    date_from=data["date_from"],
                    date_to=data["date_to"],
                )
            except InvalidInput as error:
                for item in error.errors:
                    field = item.get("field")
                    form.add_error(field if field in form.fields else None, item["message"])
                status = 422
            except Conflict as error:
                form.add_error(None, error.message)
                status = 409
            else:
                messages.success(request, MESSAGE_WAITLIST_JOINED)
                return redirect("booking:waitlist")
        else:
            status = 422
    entries = waitlist.waitlist_entries(patient=request.user)
    page_obj = Paginator(entries, WAITLIST_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "booking/waitlist.html",
        {"form": form, "page_obj": page_obj, "entries": page_obj.object_list},
        status=status,
    )


@role_required(Role.PATIENT)
@require_POST
def waitlist_leave(request, entry_id):
    """Leave one entry (the same service as DELETE /api/waitlist/{id}; someone else's: 404)."""
    waitlist.waitlist_leave(patient=request.user, entry_id=entry_id)
    messages.success(request, MESSAGE_WAITLIST_LEFT)
    return redirect("booking:waitlist")


# --- My insurance --------------------------------------------------------------------------

MESSAGE_INSURANCE_SAVED = _("Your insurance details are saved (encrypted).")


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def insurance(request):
    """My insurance: type, insurer, Krankenversichertennummer (the same service as
    PUT /api/patient/insurance); a wrong check digit is an error at the number."""
    profile = services.patient_profile_get(patient=request.user)
    initial = {
        "insurance_type": profile.insurance_type or "",
        "insurer_name": profile.insurer_name or "",
        "insurance_number": profile.insurance_number or "",
    }
    form = InsuranceForm(request.POST if request.method == "POST" else None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                patient_insurance_update(patient=request.user, **form.insurance_values())
            except InvalidInput as error:
                form_errors_add(form, error)
                status = 422
            else:
                messages.success(request, MESSAGE_INSURANCE_SAVED)
                return redirect(safe_next_url(request, reverse("booking:insurance")))
        else:
            status = 422
    return render(request, "booking/insurance.html", {"form": form}, status=status)


# --- The record's export and erasure (GDPR Art. 15, 17, 20) ----------------------------------


@role_required(Role.PATIENT)
@require_GET
def export(request, format: str):
    """The same JSON or FHIR download as GET /api/patient/record/export."""
    return export_response(patient=request.user, format=format)


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def erasure(request):
    """Ask for erasure: what stays (the record, for the retention period) and what goes, a
    confirmation tick, then the account closes and the session ends."""
    form = ErasureForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        filed = services.erasure_request(patient=request.user)
        session_logout(request=request)
        until = date_format(filed.retain_until, "DATE_FORMAT")
        messages.success(request, MESSAGE_ERASURE_FILED % {"date": until})
        return redirect("home")
    context = {
        "form": form,
        "retain_until": erasure_retention_date(patient=request.user),
        "retention_years": settings.PATTERM_RECORD_RETENTION_YEARS,
        "today": timezone.localdate(),
    }
    return render(request, "booking/erasure.html", context)
