"""Staff pages of booking: the practitioner's schedule and the clinic admin's dashboard
(schedule, opening hours, absences, slot series). Each view checks the role, validates a form,
calls one service of booking/services.py and renders or redirects."""

import datetime
import itertools

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Role
from booking import services
from booking.staff_forms import (
    AbsenceForm,
    OpeningHoursForm,
    ScheduleForm,
    SlotSeriesForm,
    VisitMotiveForm,
)
from booking.views import move_page
from patterm.errors import DomainError
from patterm.staff import form_errors_add
from patterm.web import role_required
from vault.keys import data_keys_preload

PER_PAGE = 25
MESSAGE_MOVED_FOR_PATIENT = _(
    "The appointment is moved. The patient gets an e-mail with the updated calendar file."
)


def _schedule_context(request) -> dict:
    """One week of the viewer's schedule (audited per patient shown), grouped by local day."""
    form = ScheduleForm(request.GET or None)
    first = form.first_day()
    schedule = services.schedule_for_days(
        actor=request.user, first_day=first, last_day=first + datetime.timedelta(days=6)
    )
    data_keys_preload({appointment.patient_id for appointment in schedule.appointments})
    by_day = {
        day: list(items)
        for day, items in itertools.groupby(
            schedule.appointments, key=lambda a: timezone.localdate(a.starts_at)
        )
    }
    days = [
        {"day": day, "appointments": by_day.get(day, [])}
        for day in (first + datetime.timedelta(days=n) for n in range(7))
    ]
    today = timezone.localdate()
    return {
        "form": form,
        "first_day": first,
        "last_day": schedule.last_day,
        "today": today,
        "now": timezone.now(),  # only appointments still ahead have a "Move" link
        "today_appointments": by_day.get(today, []),
        "days": days,
        "count": len(schedule.appointments),
        "previous_week": (first - datetime.timedelta(days=7)).isoformat(),
        "next_week": (first + datetime.timedelta(days=7)).isoformat(),
    }


@role_required(Role.PRACTITIONER)
def schedule(request):
    """The practitioner's dashboard: today's and the week's appointments with snapshots."""
    return render(request, "booking/staff/schedule.html", _schedule_context(request))


@role_required(Role.PRACTITIONER, Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def appointment_move(request, appointment_id):
    """Move a patient's appointment when they call (decision 0021): the practitioner's free
    times for its visit motive by day, one chosen with a POST; no cut-off for the practice. An
    appointment of another clinic: 404."""
    return move_page(
        request,
        appointment_of=lambda pk: services.appointment_get(user=request.user, appointment_id=pk),
        appointment_id=appointment_id,
        by_clinic=True,
        done_url=reverse(_dashboard(request.user)),
        done_message=MESSAGE_MOVED_FOR_PATIENT,
        back_url=_dashboard(request.user),
    )


def _dashboard(user) -> str:
    return "booking_staff:schedule" if user.role == Role.PRACTITIONER else "booking_staff:clinic"


@role_required(Role.CLINIC_ADMIN)
def clinic_dashboard(request):
    """The clinic admin's dashboard: the week's schedule of their clinics, and the set-up."""
    return render(request, "booking/staff/clinic.html", _schedule_context(request))


def _page(request, queryset):
    return Paginator(queryset, PER_PAGE).get_page(request.GET.get("page"))


@role_required(Role.CLINIC_ADMIN)
def opening_hours(request):
    """The weekly hours of the clinics' practitioners, and a form to add some."""
    practitioners = services.practitioners_administered(actor=request.user)
    form = OpeningHoursForm(request.POST or None, practitioners=practitioners)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.opening_hours_add(
                actor=request.user,
                membership_id=data["practitioner"].pk,
                weekday=data["weekday"],
                start_time=data["start_time"],
                end_time=data["end_time"],
                slot_minutes=data["slot_minutes"],
                specialty=data["specialty"],
            )
        except DomainError as error:
            form_errors_add(form, error)
        else:
            messages.success(request, _("The opening hours were added."))
            return redirect("booking_staff:opening_hours")
    page_obj = _page(request, services.opening_hours_administered(actor=request.user))
    return render(request, "booking/staff/opening_hours.html", {"form": form, "page_obj": page_obj})


@require_POST
@role_required(Role.CLINIC_ADMIN)
def opening_hours_remove(request, opening_hours_id: int):
    services.opening_hours_remove(actor=request.user, opening_hours_id=opening_hours_id)
    messages.success(request, _("The opening hours were removed."))
    return redirect("booking_staff:opening_hours")


@role_required(Role.CLINIC_ADMIN)
def absences(request):
    """Current and coming absences of the clinics' practitioners, and a form to add one."""
    practitioners = services.practitioners_administered(actor=request.user)
    form = AbsenceForm(request.POST or None, practitioners=practitioners)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.absence_add(
                actor=request.user,
                membership_id=data["practitioner"].pk,
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
            )
        except DomainError as error:
            form_errors_add(form, error)
        else:
            messages.success(request, _("The absence was added."))
            return redirect("booking_staff:absences")
    page_obj = _page(request, services.absences_administered(actor=request.user))
    return render(request, "booking/staff/absences.html", {"form": form, "page_obj": page_obj})


@require_POST
@role_required(Role.CLINIC_ADMIN)
def absence_remove(request, absence_id: int):
    services.absence_remove(actor=request.user, absence_id=absence_id)
    messages.success(request, _("The absence was removed."))
    return redirect("booking_staff:absences")


@role_required(Role.CLINIC_ADMIN)
def slots(request):
    """Generate a series of slots for a practitioner (the service of POST /api/medical/slots)."""
    practitioners = services.practitioners_administered(actor=request.user)
    form = SlotSeriesForm(request.POST or None, practitioners=practitioners)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        membership = data["practitioner"]
        try:
            created = services.slots_create(
                actor=request.user,
                clinic=membership.clinic,
                practitioner_id=membership.user_id,
                specialty=data["specialty"],
                times=services.series_slot_times(
                    date_from=data["date_from"],
                    date_to=data["date_to"],
                    start_time=data["start_time"],
                    end_time=data["end_time"],
                    slot_minutes=data["slot_minutes"],
                    weekdays=data["weekdays"],
                ),
            )
        except DomainError as error:
            form_errors_add(form, error)
        else:
            count = len(created)
            messages.success(
                request,
                ngettext("%(count)s slot was created.", "%(count)s slots were created.", count)
                % {"count": count},
            )
            return redirect("booking_staff:slots")
    return render(request, "booking/staff/slots.html", {"form": form})


@role_required(Role.CLINIC_ADMIN)
def motives(request):
    """The visit motives of the clinics' practitioners, and a form to add one."""
    practitioners = services.practitioners_administered(actor=request.user)
    form = VisitMotiveForm(request.POST or None, practitioners=practitioners)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        membership, specialty = data.pop("practitioner"), data.pop("specialty")
        try:
            services.motive_add(
                actor=request.user, membership_id=membership.pk, specialty=specialty, **data
            )
        except DomainError as error:
            form_errors_add(form, error)
        else:
            messages.success(request, _("The visit motive was added."))
            return redirect("booking_staff:motives")
    page_obj = _page(request, services.motives_administered(actor=request.user))
    return render(request, "booking/staff/motives.html", {"form": form, "page_obj": page_obj})


@require_POST
@role_required(Role.CLINIC_ADMIN)
def motive_remove(request, motive_id: int):
    try:
        services.motive_remove(actor=request.user, motive_id=motive_id)
    except DomainError as error:
        if error.status == 404:
            raise
        messages.error(request, error.message)
    else:
        messages.success(request, _("The visit motive was removed."))
    return redirect("booking_staff:motives")
