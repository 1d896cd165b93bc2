"""The booking part of the JSON API: reference data, search, appointments, staff schedule."""

import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Prefetch
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from ninja import Query, Router, Status
from ninja.pagination import paginate

from accounts.auth import BearerTokenAuth
from accounts.models import Clinic, Membership, Role
from booking import services, waitlist
from booking.calendar import appointment_ics
from booking.models import Appointment, PractitionerSpecialty, Slot, Specialty
from booking.schemas import (
    AppointmentFilters,
    AppointmentOut,
    BookIn,
    ClinicWithSpecialtiesOut,
    InsuranceIn,
    InsuranceOut,
    MoveIn,
    OfferConfirmIn,
    OfferOut,
    ScheduleFilters,
    SlotFilters,
    SlotOut,
    SlotsIn,
    SpecialtyOut,
    WaitlistEntryOut,
    WaitlistIn,
)
from patterm.errors import InvalidInput, NotFound
from patterm.openapi import errors
from patterm.pagination import CappedCountPagination, Pagination, RenderedPage
from vault.insurance import patient_insurance_update
from vault.keys import data_keys_preload

router = Router(tags=["booking"])

# Who may call what, checked before the path, query or body is read (accounts/auth.py).
MESSAGE_PATIENTS_ONLY = _("Only patients book appointments and join waitlists.")
MESSAGE_CLINIC_ADMINS_ONLY = _("Only clinic admins create slots.")
MESSAGE_SCHEDULE_STAFF_ONLY = _("Only practitioners and clinic admins read the schedule.")
PATIENTS = BearerTokenAuth(Role.PATIENT, message=MESSAGE_PATIENTS_ONLY, code="not_a_patient")
CLINIC_ADMINS = BearerTokenAuth(Role.CLINIC_ADMIN, message=MESSAGE_CLINIC_ADMINS_ONLY)
SCHEDULE_STAFF = BearerTokenAuth(
    Role.PRACTITIONER, Role.CLINIC_ADMIN, message=MESSAGE_SCHEDULE_STAFF_ONLY
)


BOOKING_ERRORS = {
    "404": "`slot_not_found`: no such slot.",
    "409": "`slot_taken` (someone else got it first), `slot_in_past`, "
    "`overlapping_appointment`, `motive_does_not_fit` (too little free time from there).",
    "422": "A field, or a visit motive's rule: `motive_not_offered`, `motive_not_online`, "
    "`motive_new_patients_only`, `motive_known_patients_only`, `insurance_type_required`, "
    "`insurance_not_accepted` (API.md).",
}


def appointment_out(
    appointment: Appointment, *, viewer, staff_clinics: frozenset[int] | None = None
) -> dict:
    """Reason for the owner and the clinic's staff; the booking snapshot for staff only."""
    # The owner, or the account holder who booked for a relative (only their relatives'
    # appointments reach them: booking.services.appointments_managed_by).
    is_owner = appointment.patient_id == viewer.pk or (
        viewer.role == Role.PATIENT and appointment.booked_by_id == viewer.pk
    )
    if staff_clinics is None:
        staff_clinics = services.staff_clinic_ids(viewer)
    is_staff = not is_owner and appointment.slot.clinic_id in staff_clinics
    body = {
        "id": appointment.pk,
        "status": appointment.status,
        "slot": appointment.slot,
        "booked_at": appointment.booked_at,
        "cancelled_at": appointment.cancelled_at,
        # The motive's end (a motive may take several slots; `slot` is the first).
        "ends_at": appointment.ends_at,
        "motive": appointment.motive,
    }
    if is_owner or is_staff:
        body["reason"] = appointment.reason
        if appointment.booked_by_id is not None:
            body["booked_by"] = "holder"  # who booked, never their name (decision 0014)
    if is_staff:
        body["patient"] = {
            "id": appointment.patient_id,
            "first_name": appointment.patient_first_name,
            "last_name": appointment.patient_last_name,
            "date_of_birth": appointment.patient_date_of_birth,
            "insurance_type": appointment.patient_insurance_type,
        }
    return body


# --- Reference data -------------------------------------------------------------------------


@router.get("/specialties", response=list[SpecialtyOut], auth=None)
@paginate(Pagination)
def specialties(request):
    return Specialty.objects.order_by("slug")


@router.get("/clinics", response=list[ClinicWithSpecialtiesOut], auth=None)
@paginate(Pagination)
def clinics(request):
    """Clinics with the specialties their practitioners offer."""
    offered = PractitionerSpecialty.objects.select_related("specialty").order_by("specialty__slug")
    return Clinic.objects.order_by("name", "pk").prefetch_related(
        Prefetch(
            "memberships",
            queryset=Membership.objects.filter(role=Role.PRACTITIONER).prefetch_related(
                Prefetch("specialties", queryset=offered)
            ),
        )
    )


# --- Search ---------------------------------------------------------------------------------


@router.get("/slots", response=list[SlotOut], auth=None)
@paginate(CappedCountPagination)
def slots(request, filters: Query[SlotFilters]):
    """Free future slots, ordered by start; `date_from`/`date_to` are local days, inclusive.
    `count` is exact up to 1,000 matches; beyond, `count_capped` is true."""
    return services.free_slots(**filters.dict())


def appointments_out(appointments: list, *, viewer) -> list[dict]:
    """Many appointments for one viewer: their clinics once, every patient's key in one query."""
    clinics = services.staff_clinic_ids(viewer)
    data_keys_preload({a.patient_id for a in appointments})
    return [appointment_out(a, viewer=viewer, staff_clinics=clinics) for a in appointments]


# --- Appointments ---------------------------------------------------------------------------


@router.post(
    "/appointments",
    response={201: AppointmentOut},
    exclude_unset=True,
    auth=PATIENTS,
    openapi_extra=errors(**BOOKING_ERRORS),
)
def book(request, payload: BookIn):
    """Book a free slot, or with `motive_id` the consecutive free slots the visit motive
    needs. A slot someone else got first: `409 slot_taken`; a motive's rule broken: `422`
    with the rule's code (API.md)."""
    appointment = services.appointment_book(
        patient=request.user,
        slot_id=payload.slot_id,
        reason=payload.reason,
        motive_id=payload.motive_id,
        insurance_type=payload.insurance_type,
    )
    return Status(201, appointment_out(appointment, viewer=request.user))


@router.get("/appointments", response=list[AppointmentOut], exclude_unset=True)
@paginate(Pagination)
def appointments(request, filters: Query[AppointmentFilters]):
    """Patients: their own appointments. Practitioners and clinic admins: their clinics'."""
    zone = ZoneInfo(settings.TIME_ZONE)
    listed = services.appointments_visible_to(request.user).order_by("starts_at", "pk")
    if filters.status:
        listed = listed.filter(status=filters.status)
    if filters.date_from:
        listed = listed.filter(
            starts_at__gte=datetime.datetime.combine(filters.date_from, datetime.time(), zone)
        )
    if filters.date_to:
        end = datetime.datetime.combine(
            filters.date_to + datetime.timedelta(days=1), datetime.time(), zone
        )
        listed = listed.filter(starts_at__lt=end)
    return RenderedPage(listed, lambda page: appointments_out(page, viewer=request.user))


@router.get("/appointments/{uuid:appointment_id}", response=AppointmentOut, exclude_unset=True)
def appointment(request, appointment_id):
    found = services.appointment_get(user=request.user, appointment_id=appointment_id)
    return appointment_out(found, viewer=request.user)


@router.post(
    "/appointments/{uuid:appointment_id}/cancel",
    response=AppointmentOut,
    exclude_unset=True,
    openapi_extra=errors(
        **{"409": "`not_cancellable` (not booked any more), `cancellation_cutoff_passed`."}
    ),
)
def cancel(request, appointment_id):
    """Cancel: the patient until the clinic's cut-off, the clinic's staff any time."""
    cancelled = services.appointment_cancel(actor=request.user, appointment_id=appointment_id)
    return appointment_out(cancelled, viewer=request.user)


@router.post(
    "/appointments/{uuid:appointment_id}/move",
    response=AppointmentOut,
    exclude_unset=True,
    openapi_extra=errors(
        **{
            "404": "`not_found`: no such appointment, or not yours or your relative's (staff: "
            "not of your clinics); `slot_not_found`.",
            "409": "`too_late_to_move` (the clinic's cut-off has passed), `not_movable` (not "
            "booked any more), `same_time`, `slot_taken`, `slot_in_past`, "
            "`overlapping_appointment`, `motive_does_not_fit`.",
            "422": "`validation_error` (`slot_id`: another practitioner, clinic or specialty), "
            "`motive_not_online`, `insurance_not_accepted`.",
        }
    ),
)
def move(request, appointment_id, payload: MoveIn):
    """Move the appointment to another free time of the same practitioner and visit motive:
    the patient until the clinic's cut-off, the clinic's staff any time (decision 0021). The
    id stays; the calendar file's SEQUENCE rises and its METHOD is REQUEST; the e-mail
    attaches it."""
    moved = services.appointment_move(
        actor=request.user, appointment_id=appointment_id, slot_id=payload.slot_id
    )
    return appointment_out(moved, viewer=request.user)


@router.get(
    "/appointments/{uuid:appointment_id}/ics",
    openapi_extra={
        "responses": {
            200: {
                "description": "The iCalendar file (RFC 5545), one VEVENT.",
                "content": {"text/calendar": {"schema": {"type": "string"}}},
            }
        }
    },
)
def ics(request, appointment_id):
    """The appointment as an iCalendar file, for the patient's calendar."""
    found = services.own_appointment_get(patient=request.user, appointment_id=appointment_id)
    return ics_response(found)


def ics_response(appointment: Appointment) -> HttpResponse:
    """The iCalendar download of one appointment (the API and the portal's "add to calendar")."""
    response = HttpResponse(
        appointment_ics(appointment), content_type="text/calendar; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="termin-{appointment.pk}.ics"'
    return response


# --- Staff ----------------------------------------------------------------------------------


@router.get(
    "/medical/schedule", response=list[AppointmentOut], exclude_unset=True, auth=SCHEDULE_STAFF
)
def schedule(request, filters: Query[ScheduleFilters]):
    """Booked appointments with booking snapshots: from `date_from` (default today) for up to
    31 days (default 7). Practitioners see their own, clinic admins their clinics'."""
    listed = services.schedule_for_days(
        actor=request.user, first_day=filters.date_from, last_day=filters.date_to
    ).appointments
    return appointments_out(listed, viewer=request.user)


@router.post(
    "/medical/slots",
    response={201: list[SlotOut]},
    auth=CLINIC_ADMINS,
    openapi_extra=errors(409, **{"404": "`not_found`: no such clinic, or not yours."}),
)
def create_slots(request, payload: SlotsIn):
    """A clinic admin creates one slot, or a series from daily hours over a date range."""
    clinic = Clinic.objects.filter(pk=payload.clinic).first()
    specialty = Specialty.objects.filter(slug=payload.specialty).first()
    if clinic is None:
        raise NotFound()
    if specialty is None:
        raise InvalidInput([{"field": "specialty", "message": "Unknown specialty."}])
    if payload.starts_at:
        times = [services.SlotTime(payload.starts_at, payload.ends_at)]
    else:
        times = services.series_slot_times(
            date_from=payload.date_from,
            date_to=payload.date_to,
            start_time=payload.start_time,
            end_time=payload.end_time,
            slot_minutes=payload.slot_minutes,
            weekdays=payload.weekdays,
        )
    created = services.slots_create(
        actor=request.user,
        clinic=clinic,
        practitioner_id=payload.practitioner,
        specialty=specialty,
        times=times,
    )
    listed = Slot.objects.filter(pk__in=[slot.pk for slot in created]).select_related(
        "clinic", "practitioner", "specialty"
    )
    return Status(201, list(listed.order_by("starts_at", "pk")))


# --- Waitlist -------------------------------------------------------------------------------


@router.post(
    "/waitlist",
    response={201: WaitlistEntryOut},
    auth=PATIENTS,
    openapi_extra=errors(**{"409": "`waitlist_limit`: too many entries waiting."}),
)
def waitlist_join(request, payload: WaitlistIn):
    """Wait for a slot of a specialty (optionally a city, clinic, practitioner, days). When a
    matching slot becomes free, the first patient waiting is offered it by e-mail."""
    entry = waitlist.waitlist_join(
        patient=request.user,
        specialty=payload.specialty,
        city=payload.city,
        clinic_id=payload.clinic,
        practitioner_id=payload.practitioner,
        date_from=payload.date_from,
        date_to=payload.date_to,
    )
    return Status(201, waitlist.waitlist_entry_get(patient=request.user, entry_id=entry.pk))


@router.get("/waitlist", response=list[WaitlistEntryOut])
@paginate(Pagination)
def waitlist_entries(request):
    """The patient's waitlist entries that still wait, each with its open offer (or null)."""
    return waitlist.waitlist_entries(patient=request.user)


@router.delete("/waitlist/{uuid:entry_id}", response={204: None})
def waitlist_leave(request, entry_id):
    """Leave a waitlist; an open offer is declined and its slot passed on."""
    waitlist.waitlist_leave(patient=request.user, entry_id=entry_id)
    return Status(204, None)


@router.get("/waitlist/offers/{uuid:offer_id}", response=OfferOut)
def waitlist_offer(request, offer_id):
    """One of the patient's offers (the e-mail links to it)."""
    return waitlist.offer_get(patient=request.user, offer_id=offer_id)


@router.post(
    "/waitlist/offers/{uuid:offer_id}/confirm",
    response={201: AppointmentOut},
    exclude_unset=True,
    auth=PATIENTS,
    openapi_extra=errors(
        **{"409": "`offer_expired`, `offer_closed`, or a booking conflict (`slot_taken`)."}
    ),
)
def waitlist_offer_confirm(request, offer_id, payload: OfferConfirmIn | None = None):
    """Book the offered slot. An offer whose hold has ended: `409 offer_expired`."""
    appointment = waitlist.offer_confirm(
        patient=request.user, offer_id=offer_id, reason=payload.reason if payload else ""
    )
    return Status(201, appointment_out(appointment, viewer=request.user))


@router.post(
    "/waitlist/offers/{uuid:offer_id}/decline",
    response=OfferOut,
    openapi_extra=errors(**{"409": "`offer_expired` or `offer_closed`."}),
)
def waitlist_offer_decline(request, offer_id):
    """Pass the slot on to the next patient waiting; the entry keeps waiting."""
    return waitlist.offer_decline(patient=request.user, offer_id=offer_id)


# --- Insurance on the patient's profile ---------------------------------------------------------


def _insurance_out(profile) -> dict:
    return {
        "insurance_type": profile.insurance_type,
        "insurer_name": profile.insurer_name,
        "insurance_number": profile.insurance_number,
    }


@router.get(
    "/patient/insurance",
    response=InsuranceOut,
    auth=PATIENTS,
    openapi_extra=errors(**{"404": "`not_found`: the patient has no profile."}),
)
def insurance(request):
    """The patient's insurance (decrypted for them alone)."""
    profile = services.patient_profile_get(patient=request.user)
    if profile is None:
        raise NotFound()
    return _insurance_out(profile)


@router.put("/patient/insurance", response=InsuranceOut, auth=PATIENTS)
def insurance_update(request, payload: InsuranceIn):
    """Replace the insurance: a Krankenversichertennummer with a wrong check digit is a 422
    naming `insurance_number`."""
    number = "".join((payload.insurance_number or "").split()).upper()
    profile = patient_insurance_update(
        patient=request.user,
        insurance_type=payload.insurance_type or None,
        insurer_name=(payload.insurer_name or "").strip() or None,
        insurance_number=number or None,
    )
    return _insurance_out(profile)
