"""Booking: slots, appointments, cancellation, and the staff schedule.

A slot is claimed by one conditional UPDATE (only a free slot changes); a partial unique index
allows at most one booked appointment per slot, and the database refuses overlapping slots of a
practitioner. A lost race is `Conflict("slot_taken")`, never a double booking.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic, Membership, Role, User
from accounts.services import user_has_login
from audit.models import AuditAction
from audit.signals import send_event
from booking import search, waitlist
from booking.models import (
    Absence,
    Appointment,
    AppointmentSlot,
    AppointmentStatus,
    MailKind,
    MotivePatients,
    OpeningHours,
    SentReminder,
    Slot,
    Specialty,
    VisitMotive,
)
from booking.outbox import mail_enqueue
from consent.models import CareRelationship, CareSource
from consent.relatives import acting_for
from consent.services import care_relationship_record
from patterm.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from patterm.numbers import ascii_int
from vault.insurance import MESSAGE_INSURANCE_UNKNOWN
from vault.keys import request_key_cache
from vault.models import InsuranceType
from vault.services import erasure_request_file, patient_profile_get

MESSAGE_SLOT_TAKEN = _("This slot has just been booked by someone else. Please choose another.")
MESSAGE_SLOT_PAST = _("This slot lies in the past.")
MESSAGE_SLOT_NOT_FOUND = _("There is no such slot.")
MESSAGE_OVERLAPPING = _("You already have an appointment at this time.")
MESSAGE_CUTOFF = _(
    "Appointments at this clinic can be cancelled online until %(hours)s hours before. "
    "Please call the clinic."
)
MESSAGE_NOT_CANCELLABLE = _("This appointment is not booked (any more).")
MESSAGE_SLOT_OVERLAPS = _("The practitioner already has a slot at this time.")
MESSAGE_NOT_PRACTITIONER_HERE = _("This practitioner does not work at your clinic.")
MESSAGE_ONLY_PATIENTS_BOOK = _("Only patients can book appointments.")


# --- Who sees which appointments ------------------------------------------------------------


def _clinic_ids(user: User, *roles: str) -> list[int]:
    return list(
        Membership.objects.filter(user=user, role__in=roles).values_list("clinic_id", flat=True)
    )


def appointments_visible_to(user: User) -> QuerySet[Appointment]:
    """Patients: their own. Practitioners and clinic admins: their clinics'. Others: none."""
    appointments = Appointment.objects.select_related(
        "slot__clinic", "slot__practitioner", "slot__specialty", "motive"
    )
    if user.role == Role.PATIENT:
        return appointments.filter(patient=user)
    if user.role in (Role.PRACTITIONER, Role.CLINIC_ADMIN):
        clinics = _clinic_ids(user, Role.PRACTITIONER, Role.CLINIC_ADMIN)
        return appointments.filter(slot__clinic_id__in=clinics)
    return appointments.none()


def appointments_managed_by(patient: User) -> QuerySet[Appointment]:
    """A patient's own appointments and those of the relatives they manage now (decision
    0014): what they may open and cancel. Not their record or export, which stay their own."""
    managed = Q(patient=patient) | Q(
        patient__holder_link__holder=patient,
        patient__holder_link__ended_at__isnull=True,
        patient__is_active=True,
    )
    return Appointment.objects.select_related(
        "slot__clinic", "slot__practitioner", "slot__specialty"
    ).filter(managed)


def _reachable(user: User) -> QuerySet[Appointment]:
    if user.role == Role.PATIENT:
        return appointments_managed_by(user)
    return appointments_visible_to(user)


def appointment_get(*, user: User, appointment_id) -> Appointment:
    """One appointment, if `user` may see it (a holder: their relatives' too); missing and
    forbidden are both NotFound."""
    appointment = _reachable(user).filter(pk=appointment_id).first()
    if appointment is None:
        raise NotFound()
    return appointment


def own_appointment_get(*, patient: User, appointment_id) -> Appointment:
    """One of the patient's own appointments or their relatives' (the ICS download, the
    confirmation page); anyone else's, and any appointment for staff, is NotFound."""
    if patient.role != Role.PATIENT:
        raise NotFound()
    appointment = appointment_get(user=patient, appointment_id=appointment_id)
    return appointment


def appointments_of(*, patient: User, upcoming: bool) -> QuerySet[Appointment]:
    """The patient's own appointments: upcoming (not yet begun, soonest first) or past
    (begun already, latest first), whatever their status."""
    now = timezone.now()
    own = appointments_visible_to(patient).filter(patient=patient)
    if upcoming:
        return own.filter(starts_at__gte=now).order_by("starts_at", "pk")
    return own.filter(starts_at__lt=now).order_by("-starts_at", "-pk")


def cancellation_deadline(appointment: Appointment) -> datetime.datetime:
    """Until when the patient may cancel online: the clinic's cut-off before the start."""
    hours = appointment.slot.clinic.cancellation_cutoff_hours
    return appointment.starts_at - datetime.timedelta(hours=hours)


def patient_may_cancel(appointment: Appointment, *, now: datetime.datetime | None = None) -> bool:
    """Whether the owner can still cancel online (booked, and the cut-off not passed)."""
    now = now or timezone.now()
    return appointment.status == AppointmentStatus.BOOKED and now <= cancellation_deadline(
        appointment
    )


def staff_clinic_ids(user: User) -> frozenset[int]:
    """The clinics whose appointments `user` handles as practitioner or clinic admin."""
    return frozenset(_clinic_ids(user, Role.PRACTITIONER, Role.CLINIC_ADMIN))


# --- Booking and cancelling -----------------------------------------------------------------


class MotiveRefused(DomainError):
    """A visit motive that this booking may not have: the motive's rules, or one that is not
    the slot's. `errors` names the field (`motive_id` or `insurance_type`)."""

    status = 422

    def __init__(self, message, code: str, *, field: str = "motive_id"):
        super().__init__(message, code, errors=[{"field": field, "message": str(message)}])


MESSAGE_MOTIVE_NOT_OFFERED = _("This practitioner does not offer this visit motive here.")
MESSAGE_MOTIVE_NOT_ONLINE = _("This visit motive cannot be booked online. Please call the clinic.")
MESSAGE_MOTIVE_KNOWN_ONLY = _(
    "This visit motive is for patients the practice knows already. Please choose another."
)
MESSAGE_MOTIVE_NEW_ONLY = _("This visit motive is for new patients only. Please choose another.")
MESSAGE_INSURANCE_NOT_ACCEPTED = _(
    "For this visit motive the practice does not accept this insurance type."
)
MESSAGE_INSURANCE_REQUIRED = _(
    "Please say how you are insured: this visit motive is not open to every insurance type."
)
MESSAGE_MOTIVE_DOES_NOT_FIT = _(
    "From this time on the practitioner has too little free time for this visit motive. "
    "Please choose another time."
)


def patient_is_known(*, patient: User, clinic_id: int) -> bool:
    """Known at a clinic = a care relationship with it exists (booked or treated there)."""
    return CareRelationship.objects.filter(patient=patient, clinic_id=clinic_id).exists()


def motive_check(
    *,
    motive: VisitMotive | None,
    slot: Slot,
    patient: User,
    insurance_type: str | None,
    patient_kind: bool = True,
    online: bool = True,
) -> None:
    """The motive's rules for this patient on this slot (before anything is written);
    `patient_kind=False` leaves out the new/known rule (a move: decision 0021), `online=False`
    the bookable-online rule (the practice moving an appointment)."""
    if insurance_type and insurance_type not in InsuranceType.values:
        raise MotiveRefused(
            MESSAGE_INSURANCE_UNKNOWN, "insurance_type_unknown", field="insurance_type"
        )
    if motive is None:
        return
    membership = motive.membership
    if (
        membership.user_id != slot.practitioner_id
        or membership.clinic_id != slot.clinic_id
        or motive.specialty_id != slot.specialty_id
    ):
        raise MotiveRefused(MESSAGE_MOTIVE_NOT_OFFERED, "motive_not_offered")
    if online and not motive.bookable_online:
        raise MotiveRefused(MESSAGE_MOTIVE_NOT_ONLINE, "motive_not_online")
    if patient_kind and not motive.admits(
        known=patient_is_known(patient=patient, clinic_id=slot.clinic_id)
    ):
        if motive.patients == MotivePatients.KNOWN:
            raise MotiveRefused(MESSAGE_MOTIVE_KNOWN_ONLY, "motive_known_patients_only")
        raise MotiveRefused(MESSAGE_MOTIVE_NEW_ONLY, "motive_new_patients_only")
    if len(motive.accepted_insurance_types) < len(InsuranceType.values):
        if not insurance_type:
            raise MotiveRefused(
                MESSAGE_INSURANCE_REQUIRED, "insurance_type_required", field="insurance_type"
            )
        if not motive.accepts(insurance_type):
            raise MotiveRefused(
                MESSAGE_INSURANCE_NOT_ACCEPTED, "insurance_not_accepted", field="insurance_type"
            )


def motive_slots(*, slot: Slot, motive: VisitMotive | None) -> list[Slot]:
    """The slots a booking of `motive` from `slot` occupies: `slot` and the practitioner's
    next ones at the clinic, each starting where the one before ends, until the motive's
    duration is covered (decision 0013). Too little consecutive time: Conflict."""
    if motive is None:
        return [slot]
    needed_until = slot.starts_at + datetime.timedelta(minutes=motive.duration_minutes)
    if slot.ends_at >= needed_until:
        return [slot]
    following = Slot.objects.filter(
        practitioner_id=slot.practitioner_id,
        clinic_id=slot.clinic_id,
        specialty_id=slot.specialty_id,
        starts_at__gte=slot.ends_at,
        starts_at__lt=needed_until,
    ).order_by("starts_at")
    chosen = [slot]
    for candidate in following:
        if candidate.starts_at != chosen[-1].ends_at:
            break
        chosen.append(candidate)
        if candidate.ends_at >= needed_until:
            return chosen
    raise Conflict(MESSAGE_MOTIVE_DOES_NOT_FIT, "motive_does_not_fit")


@request_key_cache()
def appointment_book(
    *,
    patient: User,
    slot_id: str,
    reason: str = "",
    motive_id: int | None = None,
    insurance_type: str | None = None,
    actor: User | None = None,
) -> Appointment:
    """Book a free future slot (or, for a `motive_id` longer than one slot, the consecutive
    free slots its duration needs, all or none) for `patient`; writes the confirmation e-mail
    to the outbox, which sends it after commit (booking/outbox.py, decision 0022).

    `actor` is who books (default: `patient` themself): the audit's actor and the e-mail's
    recipient (a relative has no address of their own); `patient` is whom the appointment is
    for. An actor other than the patient must be the patient's account holder (decision 0014):
    recorded as `booked_by` and audited as acting for them; anyone else is NotFound.
    `insurance_type` (an `InsuranceType`) overrides the profile's for this booking; either is
    checked against the motive's rules.
    """
    actor = actor or patient
    if actor.role != Role.PATIENT or patient.role != Role.PATIENT:
        raise Forbidden(MESSAGE_ONLY_PATIENTS_BOOK, "not_a_patient")
    actor, acting = acting_for(actor=actor, patient=patient)
    slot = _slot_found(Slot.pk_from_public_id(slot_id))
    if waitlist.hold_ended(slot):  # an ended hold passes on first, in its own transaction
        waitlist.hold_expire_if_due(slot_pk=slot.pk)
        slot = _slot_found(slot.pk)
    with transaction.atomic():
        motive = None
        if motive_id is not None:
            motive = VisitMotive.objects.select_related("membership").filter(pk=motive_id).first()
            if motive is None:
                raise MotiveRefused(MESSAGE_MOTIVE_NOT_OFFERED, "motive_not_offered")
        profile = patient_profile_get(patient=patient)
        insurance = insurance_type or (profile.insurance_type if profile else None) or None
        motive_check(motive=motive, slot=slot, patient=patient, insurance_type=insurance)
        if slot.starts_at <= timezone.now():
            raise Conflict(MESSAGE_SLOT_PAST, "slot_in_past")
        # One booking at a time per patient, so the overlap check below cannot race. NO KEY
        # UPDATE: it must not block other transactions' foreign key checks on the patient's row
        # (FOR KEY SHARE, deferred to their commit, when they hold the audit chain's lock).
        User.objects.select_for_update(no_key=True).filter(pk=patient.pk).exists()
        occupied = motive_slots(slot=slot, motive=motive)
        ends_at = (
            slot.starts_at + datetime.timedelta(minutes=motive.duration_minutes)
            if motive
            else slot.ends_at
        )
        overlapping = Appointment.objects.filter(
            patient=patient,
            status=AppointmentStatus.BOOKED,
            starts_at__lt=ends_at,
            ends_at__gt=slot.starts_at,
        )
        if overlapping.exists():
            raise Conflict(MESSAGE_OVERLAPPING, "overlapping_appointment")
        held_for_patient = _slots_claim(occupied, patient=patient)
        # No savepoint (two round trips a booking): a clash ends the whole booking anyway, and
        # Conflict leaves this atomic block, which rolls back the claims above with it.
        try:
            with transaction.atomic(savepoint=False):
                appointment = Appointment.objects.create(
                    slot=slot,
                    patient=patient,
                    motive=motive,
                    starts_at=slot.starts_at,
                    ends_at=ends_at,
                    patient_first_name=profile.first_name,
                    patient_last_name=profile.last_name,
                    patient_date_of_birth=profile.date_of_birth,
                    patient_insurance_type=insurance,
                    reason=reason,
                    booked_by=actor if actor.pk != patient.pk else None,
                )
                AppointmentSlot.objects.bulk_create(
                    AppointmentSlot(appointment=appointment, slot=part) for part in occupied
                )
        except IntegrityError as error:  # the partial unique indexes: someone else holds it
            raise Conflict(MESSAGE_SLOT_TAKEN, "slot_taken") from error
        # A slot held for this patient: their waitlist offer is confirmed. Row changes come
        # before the first audit event.
        for part in held_for_patient:
            waitlist.offer_fulfil(slot=part, patient=patient, appointment=appointment)
        care_relationship_record(patient=patient, clinic=slot.clinic, source=CareSource.BOOKING)
        details = {"slot": slot.public_id}
        if motive:
            details |= {"motive": motive.pk, "slots": len(occupied)}
        send_event(
            action=AuditAction.APPOINTMENT_BOOK,
            actor=actor,
            object_type="appointment",
            object_id=appointment.pk,
            subject_id=patient.pk,
            clinic_id=slot.clinic_id,
            details=details | acting,
        )
        # To whoever booked: a relative has no address of their own. Rendered and sent after
        # the commit, by the outbox's sender (decision 0022).
        mail_enqueue(kind=MailKind.CONFIRMATION, appointment=appointment, recipient=actor)
    return appointment


def _slots_claim(parts: list[Slot], *, patient: User) -> list[Slot]:
    """Claim `parts` for `patient`: each free, and not held for someone else by the waitlist (a
    held slot looks taken). Returns those that were held for `patient` (their waitlist offer
    is then confirmed: `waitlist.offer_fulfil`); a slot taken meanwhile is Conflict, which
    rolls back the ones claimed before it with the caller's transaction.

    Conditional UPDATEs, earliest slot first: every booking locks a practitioner's slots in the
    order of time, so two overlapping multi-slot bookings cannot deadlock. The common case, a
    free slot held for nobody, is one UPDATE; only when it finds none does a second one try the
    hold for `patient`, so the booking knows without reading offers whether it confirms one.
    """
    now = timezone.now()
    held_for_patient = []
    for part in parts:
        free = Slot.objects.filter(pk=part.pk, is_booked=False)
        if free.filter(held_for=None).update(is_booked=True):
            continue
        held = free.filter(held_for=patient, held_until__gt=now)
        if not held.update(is_booked=True, held_for=None, held_until=None):
            raise Conflict(MESSAGE_SLOT_TAKEN, "slot_taken")
        held_for_patient.append(part)
    return held_for_patient


def _slot_found(slot_pk: int | None) -> Slot:
    """The slot a booking or a move asks for, with what its checks read; else 404."""
    found = Slot.objects.select_related("clinic", "practitioner", "specialty")
    slot = found.filter(pk=slot_pk).first() if slot_pk else None
    if slot is None:
        raise NotFound(MESSAGE_SLOT_NOT_FOUND, "slot_not_found")
    return slot


def appointment_cancel(*, actor: User, appointment_id) -> Appointment:
    """Cancel: the owner until the clinic's cut-off, the clinic's staff at any time.

    The slot is free again at once.
    """
    with transaction.atomic():
        visible = _reachable(actor).filter(pk=appointment_id).values("pk")
        # Lock the appointment row only: FOR UPDATE on the joined slot and clinic rows would
        # block the deferred foreign key checks (FOR KEY SHARE) of bookings that commit while
        # holding the audit chain's lock, which this transaction then waits for: a deadlock.
        appointment = (
            Appointment.objects.select_for_update(of=("self",))
            .select_related("slot__clinic")
            .filter(pk__in=visible)
            .first()
        )
        if appointment is None:
            raise NotFound()
        if appointment.status != AppointmentStatus.BOOKED:
            raise Conflict(MESSAGE_NOT_CANCELLABLE, "not_cancellable")
        clinic = appointment.slot.clinic
        # Patients reach only their own and their relatives' (`_reachable`): the cut-off holds.
        patient_side = actor.role == Role.PATIENT
        if patient_side and not patient_may_cancel(appointment):
            raise Conflict(
                MESSAGE_CUTOFF % {"hours": clinic.cancellation_cutoff_hours},
                "cancellation_cutoff_passed",
            )
        if not patient_side:
            by = "clinic"
        else:
            by = "patient" if appointment.patient_id == actor.pk else "holder"
        _cancel(appointment, actor=actor, by=by)
        # To whoever booked (a relative has no address), or the patient: their calendar updates.
        recipient = appointment.booked_by or appointment.patient
        if user_has_login(recipient):
            mail_enqueue(kind=MailKind.CANCELLATION, appointment=appointment, recipient=recipient)
    return appointment


# --- Moving (decision 0021) ------------------------------------------------------------------

MESSAGE_TOO_LATE_TO_MOVE = _(
    "Appointments at this clinic can be moved online until %(hours)s hours before. "
    "Please call the clinic."
)
MESSAGE_NOT_MOVABLE = _("This appointment is not booked (any more), so it cannot be moved.")
MESSAGE_MOVE_SAME_TIME = _("Your appointment is at this time already. Please choose another.")
MESSAGE_MOVE_OTHER_PRACTITIONER = _(
    "An appointment moves only to another time of the same practitioner, at the same clinic "
    "and for the same specialty. Please book a new appointment for anything else."
)


def move_targets(
    appointment: Appointment, *, limit: int = 60, by_clinic: bool = False
) -> list[Slot]:
    """The times the appointment may move to: its practitioner's free future slots at the
    clinic, for the specialty, from which its visit motive fits (booking/search.py).
    `by_clinic`: the practice moving it, also for a motive not bookable online."""
    slot = appointment.slot
    targets = free_slots(
        clinic=str(slot.clinic_id),
        practitioner=slot.practitioner_id,
        motive=None if by_clinic else appointment.motive_id,
    ).filter(specialty_id=slot.specialty_id)  # the id at hand, not its slug looked up again
    if by_clinic and appointment.motive_id:
        motive = VisitMotive.objects.select_related("membership").get(pk=appointment.motive_id)
        targets = search.slots_where_motive_fits(targets, motive)
    return list(targets.exclude(pk=slot.pk)[:limit])


@request_key_cache()
def appointment_move(*, actor: User, appointment_id, slot_id: str) -> Appointment:
    """Move a booked appointment to another free time of the same practitioner, clinic,
    specialty and visit motive, until the clinic's cut-off (decision 0021).

    `actor` is the patient or the holder of the relative it is for, until the cut-off; or a
    practitioner or clinic admin of the appointment's clinic, at any time and also for a motive
    not bookable online (the patient called the practice). Anyone else's appointment is
    NotFound. In one transaction the new slots are claimed first (the conditional UPDATE of
    `appointment_book`, all or none: a slot taken meanwhile is `409 slot_taken` and nothing
    changes), then the old ones are freed and offered to the waitlist as after a cancellation.
    The appointment keeps its id, so its calendar file keeps its UID; `moves` counts up, so the
    file's SEQUENCE rises (booking/calendar.py). The e-mail attaches the METHOD:REQUEST file.
    """
    if actor.role not in (Role.PATIENT, Role.PRACTITIONER, Role.CLINIC_ADMIN):
        raise NotFound()
    by_clinic = actor.role != Role.PATIENT
    slot_pk = Slot.pk_from_public_id(slot_id)
    if slot_pk:
        waitlist.hold_expire_if_due(slot_pk=slot_pk)  # an ended hold passes on first
    with transaction.atomic():
        visible = _reachable(actor).filter(pk=appointment_id).values("pk")
        # The appointment row only (see appointment_cancel: no FOR UPDATE on joined rows).
        appointment = (
            Appointment.objects.select_for_update(of=("self",))
            .select_related("slot__clinic", "slot__specialty", "patient", "booked_by", "motive")
            .filter(pk__in=visible)
            .first()
        )
        if appointment is None:
            raise NotFound()
        if appointment.status != AppointmentStatus.BOOKED:
            raise Conflict(MESSAGE_NOT_MOVABLE, "not_movable")
        old_slot, clinic = appointment.slot, appointment.slot.clinic
        if not by_clinic and not patient_may_cancel(appointment):
            raise Conflict(
                MESSAGE_TOO_LATE_TO_MOVE % {"hours": clinic.cancellation_cutoff_hours},
                "too_late_to_move",
            )
        slot = _slot_found(slot_pk)
        if (slot.practitioner_id, slot.clinic_id, slot.specialty_id) != (
            old_slot.practitioner_id,
            old_slot.clinic_id,
            old_slot.specialty_id,
        ):
            raise InvalidInput(
                [{"field": "slot_id", "message": str(MESSAGE_MOVE_OTHER_PRACTITIONER)}],
                MESSAGE_MOVE_OTHER_PRACTITIONER,
            )
        if slot.pk == old_slot.pk:
            raise Conflict(MESSAGE_MOVE_SAME_TIME, "same_time")
        if slot.starts_at <= timezone.now():
            raise Conflict(MESSAGE_SLOT_PAST, "slot_in_past")
        patient, motive = appointment.patient, appointment.motive
        # The booking's rules that can change (bookable online, the insurance accepted); not
        # new or known patient: the booking itself made the patient known to the clinic.
        motive_check(
            motive=motive,
            slot=slot,
            patient=patient,
            insurance_type=appointment.patient_insurance_type,
            patient_kind=False,
            online=not by_clinic,
        )
        User.objects.select_for_update(no_key=True).filter(pk=patient.pk).exists()
        occupied = motive_slots(slot=slot, motive=motive)
        duration = appointment.ends_at - appointment.starts_at
        ends_at = slot.starts_at + duration if motive else slot.ends_at
        overlapping = Appointment.objects.filter(
            patient=patient,
            status=AppointmentStatus.BOOKED,
            starts_at__lt=ends_at,
            ends_at__gt=slot.starts_at,
        ).exclude(pk=appointment.pk)
        if overlapping.exists():
            raise Conflict(MESSAGE_OVERLAPPING, "overlapping_appointment")
        # Claim first, earliest first (as appointment_book): slots it occupies already (a move
        # by less than its length) stay its own; a slot taken meanwhile rolls everything back.
        old_ids = _occupied_slot_ids(appointment)
        new_parts = [part for part in occupied if part.pk not in old_ids]
        held_for_patient = _slots_claim(new_parts, patient=patient)
        freed_ids = old_ids - {part.pk for part in occupied}
        _slots_free(appointment, freed_ids)
        try:
            with transaction.atomic():
                # A slot it occupied before (moved away and back) has its row still, inactive:
                # made active again. Another appointment's active row still raises below.
                AppointmentSlot.objects.bulk_create(
                    [AppointmentSlot(appointment=appointment, slot=part) for part in new_parts],
                    update_conflicts=True,
                    unique_fields=["appointment", "slot"],
                    update_fields=["is_active"],
                )
                appointment.slot = slot
                appointment.starts_at, appointment.ends_at = slot.starts_at, ends_at
                appointment.moves += 1
                appointment.save(update_fields=["slot", "starts_at", "ends_at", "moves"])
                # Reminders belong to a time: the new one gets its own (booking/reminders.py).
                SentReminder.objects.filter(appointment=appointment).delete()
        except IntegrityError as error:  # the partial unique indexes: someone else holds it
            raise Conflict(MESSAGE_SLOT_TAKEN, "slot_taken") from error
        for part in held_for_patient:
            waitlist.offer_fulfil(slot=part, patient=patient, appointment=appointment)
        if by_clinic:
            by = {"by": "clinic"}
        elif appointment.patient_id != actor.pk:
            by = {"by": "holder", "bases": ["holder"]}
        else:
            by = {"by": "patient"}
        details = {"from_slot": old_slot.public_id, "slot": slot.public_id, "slots": len(occupied)}
        send_event(
            action=AuditAction.APPOINTMENT_MOVE,
            actor=actor,
            object_type="appointment",
            object_id=appointment.pk,
            subject_id=patient.pk,
            clinic_id=clinic.pk,
            details=details | by,
        )
        _slots_offer(appointment, freed_ids, cause="move")
        recipient = appointment.booked_by or patient
        if user_has_login(recipient):
            mail_enqueue(kind=MailKind.MOVE, appointment=appointment, recipient=recipient)
    return appointment


def _cancel(appointment: Appointment, *, actor: User, by: str) -> None:
    """Cancel a booked appointment, free its slot at once, and audit it (in the caller's
    transaction)."""
    appointment.status = AppointmentStatus.CANCELLED
    appointment.cancelled_at = timezone.now()
    appointment.save(update_fields=["status", "cancelled_at"])
    # Every slot it occupied is free again (appointments from before motives: only `slot`).
    freed_ids = _occupied_slot_ids(appointment)
    _slots_free(appointment, freed_ids)
    send_event(
        action=AuditAction.APPOINTMENT_CANCEL,
        actor=actor,
        object_type="appointment",
        object_id=appointment.pk,
        subject_id=appointment.patient_id,
        clinic_id=appointment.slot.clinic_id,
        # A holder cancelling for a relative: the relative's access log shows the basis.
        details={"by": by, "bases": ["holder"]} if by == "holder" else {"by": by},
    )
    _slots_offer(appointment, freed_ids, cause="cancellation")


def _occupied_slot_ids(appointment: Appointment) -> set[int]:
    """The slots a booked appointment occupies (before motives: only `slot`)."""
    active = AppointmentSlot.objects.filter(appointment=appointment, is_active=True)
    return {appointment.slot_id, *active.values_list("slot_id", flat=True)}


def _slots_free(appointment: Appointment, slot_ids: set[int]) -> None:
    """The appointment no longer occupies `slot_ids`: they are free again at once."""
    AppointmentSlot.objects.filter(
        appointment=appointment, slot_id__in=slot_ids, is_active=True
    ).update(is_active=False)
    Slot.objects.filter(pk__in=slot_ids).update(is_booked=False)


def _slots_offer(appointment: Appointment, slot_ids: set[int], *, cause: str) -> None:
    """The first matching waiting patient gets each freed slot (never the patient who freed
    it; this transaction holds the slots' rows), as after a cancellation, earliest first."""
    freed = Slot.objects.filter(pk__in=slot_ids).select_related("clinic").order_by("starts_at")
    for slot in freed:
        waitlist.slot_offer(slot=slot, cause=cause, not_to=appointment.patient_id)


# --- Slots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotTime:
    starts_at: datetime.datetime
    ends_at: datetime.datetime


def wall_clock_slots(
    *,
    day: datetime.date,
    start: datetime.time,
    end: datetime.time,
    minutes: int,
    zone: ZoneInfo,
) -> list[SlotTime]:
    """Slots of `minutes` real minutes from `start` to `end` local time on `day`.

    Each slot starts at its wall-clock time in `zone` and lasts exactly `minutes`, also on
    the days daylight saving time begins or ends.
    """
    slots = []
    length = datetime.timedelta(minutes=minutes)
    cursor = datetime.datetime.combine(day, start, tzinfo=zone)
    closing = datetime.datetime.combine(day, end, tzinfo=zone)
    while cursor + length <= closing:
        starts_at = cursor.astimezone(datetime.UTC)
        # A local time in the hour skipped when summer time begins does not exist; it would
        # land on the real time of a later slot and overlap it.
        if starts_at.astimezone(zone).replace(tzinfo=None) == cursor.replace(tzinfo=None):
            slots.append(SlotTime(starts_at, starts_at + length))
        cursor = cursor + length  # wall-clock arithmetic: the next slot's local start
    return slots


def _practitioner_membership(*, actor: User, clinic: Clinic, practitioner_id: int) -> Membership:
    if not Membership.objects.filter(user=actor, clinic=clinic, role=Role.CLINIC_ADMIN).exists():
        raise NotFound()
    membership = Membership.objects.filter(
        user_id=practitioner_id, clinic=clinic, role=Role.PRACTITIONER
    ).first()
    if membership is None:
        raise InvalidInput(
            [{"field": "practitioner", "message": str(MESSAGE_NOT_PRACTITIONER_HERE)}]
        )
    return membership


def _slot_times_around(*, practitioner_id: int, times: list[SlotTime]) -> list[tuple]:
    """(start, end) of the practitioner's slots within the span of `times`."""
    return list(
        Slot.objects.filter(
            practitioner_id=practitioner_id,
            starts_at__lt=max(t.ends_at for t in times),
            ends_at__gt=min(t.starts_at for t in times),
        ).values_list("starts_at", "ends_at")
    )


def _insert_slots(
    *, clinic: Clinic, practitioner_id: int, specialty: Specialty, times: list[SlotTime]
) -> list[Slot]:
    """Insert slots that do not overlap any of the practitioner's; skip exact repeats."""
    if not times:
        return []
    existing = set(_slot_times_around(practitioner_id=practitioner_id, times=times))
    new_times = [t for t in times if (t.starts_at, t.ends_at) not in existing]
    for time in new_times:
        if any(start < time.ends_at and end > time.starts_at for start, end in existing):
            raise Conflict(MESSAGE_SLOT_OVERLAPS, "slot_overlaps")
    try:
        with transaction.atomic():
            return Slot.objects.bulk_create(
                Slot(
                    clinic=clinic,
                    practitioner_id=practitioner_id,
                    specialty=specialty,
                    starts_at=time.starts_at,
                    ends_at=time.ends_at,
                )
                for time in new_times
            )
    except IntegrityError as error:  # the overlap constraint, in a race with another writer
        raise Conflict(MESSAGE_SLOT_OVERLAPS, "slot_overlaps") from error


@transaction.atomic
def slots_create(
    *,
    actor: User,
    clinic: Clinic,
    practitioner_id: int,
    specialty: Specialty,
    times: list[SlotTime],
) -> list[Slot]:
    """A clinic admin creates slots for a practitioner of their clinic (audited)."""
    _practitioner_membership(actor=actor, clinic=clinic, practitioner_id=practitioner_id)
    now = timezone.now()
    if any(time.starts_at <= now for time in times):
        raise InvalidInput([{"field": "starts_at", "message": str(MESSAGE_SLOT_PAST)}])
    created = _insert_slots(
        clinic=clinic, practitioner_id=practitioner_id, specialty=specialty, times=times
    )
    waitlist.slots_offer(slots=created)
    if created:
        send_event(
            action=AuditAction.SLOTS_CREATE,
            actor=actor,
            clinic_id=clinic.pk,
            details={"count": len(created), "practitioner": practitioner_id},
        )
    return created


MESSAGE_SERIES_DAYS_ORDER = _("The last day lies before the first.")
MESSAGE_SERIES_TOO_LONG = _("A series spans at most %(days)s days.")
MESSAGE_SERIES_TIMES_ORDER = _("The end lies before the start.")


def series_slot_times(
    *,
    date_from: datetime.date,
    date_to: datetime.date,
    start_time: datetime.time,
    end_time: datetime.time,
    slot_minutes: int,
    weekdays: list[int],
) -> list[SlotTime]:
    """The slot times of a series: on `weekdays` (0 Monday) from `date_from` to `date_to`,
    inclusive, cut from the daily hours `start_time`-`end_time` (Europe/Berlin wall clock)."""
    errors = []
    if date_to < date_from:
        errors.append({"field": "date_to", "message": str(MESSAGE_SERIES_DAYS_ORDER)})
    elif (date_to - date_from).days > settings.PATTERM_SLOT_SERIES_MAX_DAYS:
        message = MESSAGE_SERIES_TOO_LONG % {"days": settings.PATTERM_SLOT_SERIES_MAX_DAYS}
        errors.append({"field": "date_to", "message": str(message)})
    if start_time >= end_time:
        errors.append({"field": "end_time", "message": str(MESSAGE_SERIES_TIMES_ORDER)})
    if errors:
        raise InvalidInput(errors)
    zone = ZoneInfo(settings.TIME_ZONE)
    return [
        time
        for offset in range((date_to - date_from).days + 1)
        if (day := date_from + datetime.timedelta(days=offset)).weekday() in weekdays
        for time in wall_clock_slots(
            day=day, start=start_time, end=end_time, minutes=slot_minutes, zone=zone
        )
    ]


def slots_generate(
    *,
    days: int,
    start: datetime.date | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Create the slots of every practitioner's opening hours for `days` days from `start`.

    Skips absences, past times and times the practitioner has a slot at already: running it
    daily (cron) extends the horizon and changes nothing else. Returns how many slots were
    created. `on_progress(1)` is called before each opening hours row is worked on.
    """
    zone = ZoneInfo(settings.TIME_ZONE)
    start = start or timezone.localdate()
    now = timezone.now()
    created = 0
    hours = OpeningHours.objects.select_related("membership__clinic", "specialty")
    for opening in hours:
        if on_progress:
            on_progress(1)
        membership = opening.membership
        absences = list(
            Absence.objects.filter(membership=membership).values_list("starts_at", "ends_at")
        )
        times = []
        for offset in range(days):
            day = start + datetime.timedelta(days=offset)
            if day.weekday() != opening.weekday:
                continue
            times += [
                time
                for time in wall_clock_slots(
                    day=day,
                    start=opening.start_time,
                    end=opening.end_time,
                    minutes=opening.slot_minutes,
                    zone=zone,
                )
                if time.starts_at > now
                and not any(a < time.ends_at and b > time.starts_at for a, b in absences)
            ]
        with transaction.atomic():
            inserted = _insert_slots(
                clinic=membership.clinic,
                practitioner_id=membership.user_id,
                specialty=opening.specialty,
                times=_free_times(practitioner_id=membership.user_id, times=times),
            )
            waitlist.slots_offer(slots=inserted)
            created += len(inserted)
    return created


def _free_times(*, practitioner_id: int, times: list[SlotTime]) -> list[SlotTime]:
    """`times` without those that overlap a slot the practitioner has already (one made by
    hand, or from other opening hours): the run fills around it instead of failing."""
    if not times:
        return []
    taken = _slot_times_around(practitioner_id=practitioner_id, times=times)
    return [t for t in times if not any(a < t.ends_at and b > t.starts_at for a, b in taken)]


# --- Search ---------------------------------------------------------------------------------


def _local_midnight(day: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)


def slot_for_booking(*, slot_id: str) -> Slot:
    """The slot a booking page shows, free or not (the page says when it is gone); an unknown
    id is NotFound."""
    slot_pk = Slot.pk_from_public_id(slot_id)
    slot = (
        Slot.objects.select_related("clinic", "practitioner", "specialty")
        .filter(pk=slot_pk)
        .first()
        if slot_pk
        else None
    )
    if slot is None:
        raise NotFound(MESSAGE_SLOT_NOT_FOUND, "slot_not_found")
    return slot


def slot_is_bookable(slot: Slot, *, patient: User | None = None) -> bool:
    """Free, in the future and not held by the waitlist for someone else: what `free_slots`
    lists and `appointment_book` accepts."""
    held_for_other = slot.held_for_id is not None and not (
        patient is not None
        and slot.held_for_id == patient.pk
        and slot.held_until is not None
        and slot.held_until > timezone.now()
    )
    return not slot.is_booked and not held_for_other and slot.starts_at > timezone.now()


def free_slots(
    *,
    specialty: str | None = None,
    city: str | None = None,
    clinic: str | None = None,
    practitioner: int | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    motive: int | None = None,
    insurance_type: str | None = None,
    patient_status: str | None = None,
) -> QuerySet[Slot]:
    """Free future slots, ordered by start; dates are local calendar days, inclusive.

    `motive`: only the motive's practitioner's slots from which its whole duration is free
    (none if the motive is not bookable online, or its rules exclude `insurance_type` or
    `patient_status`, "new" or "known"). Without a motive those two keep practitioners with
    a motive open to them, or with no motives at all."""
    zone = ZoneInfo(settings.TIME_ZONE)
    slots = Slot.objects.filter(is_booked=False, held_for=None, starts_at__gt=timezone.now())
    # The specialty and the city as ids in the statement, not as joins: with the values before
    # it, PostgreSQL estimates the matches from the slot table's own statistics, and the capped
    # count stops after the cap's matches instead of joining every free future slot
    # (docs/performance.md, search). An unknown slug or city leaves an empty list: no query.
    if specialty:
        specialty_ids = Specialty.objects.filter(slug=specialty).values_list("pk", flat=True)
        slots = slots.filter(specialty_id__in=list(specialty_ids))
    if city:
        city_clinic_ids = Clinic.objects.filter(city__iexact=city).values_list("pk", flat=True)
        slots = slots.filter(clinic_id__in=list(city_clinic_ids))
    if clinic:  # a slug, or an id
        condition = Q(clinic__slug=clinic)
        if (clinic_id := ascii_int(clinic)) is not None:
            condition |= Q(clinic__pk=clinic_id)
        slots = slots.filter(condition)
    if practitioner:
        slots = slots.filter(practitioner_id=practitioner)
    if date_from:
        slots = slots.filter(starts_at__gte=_local_midnight(date_from, zone))
    if date_to:
        slots = slots.filter(
            starts_at__lt=_local_midnight(date_to + datetime.timedelta(days=1), zone)
        )
    known = None if patient_status is None else patient_status == "known"
    rules = search.motive_rule_filter(insurance_type=insurance_type, known=known)
    if motive is not None:
        found = VisitMotive.objects.select_related("membership").filter(rules, pk=motive).first()
        slots = search.slots_where_motive_fits(slots, found) if found else slots.none()
    elif insurance_type or known is not None:
        motives = VisitMotive.objects.filter(
            membership__user_id=OuterRef("practitioner_id"),
            membership__clinic_id=OuterRef("clinic_id"),
            specialty_id=OuterRef("specialty_id"),
        )
        slots = slots.filter(~Exists(motives) | Exists(motives.filter(rules)))
    return slots.select_related("clinic", "practitioner", "specialty").order_by("starts_at", "pk")


# --- Staff schedule -------------------------------------------------------------------------

MESSAGE_SCHEDULE_SPAN = _("date_to must lie 0 to 30 days after date_from.")


@dataclass(frozen=True)
class Schedule:
    first_day: datetime.date
    last_day: datetime.date
    appointments: list[Appointment]


def schedule_for_days(
    *, actor: User, first_day: datetime.date | None = None, last_day: datetime.date | None = None
) -> Schedule:
    """The schedule (`schedule_read`) for local calendar days, inclusive: from `first_day`
    (default today) to `last_day` (default a week), at most 31 days."""
    zone = ZoneInfo(settings.TIME_ZONE)
    first = first_day or datetime.datetime.now(zone).date()
    last = last_day or first + datetime.timedelta(days=6)
    if not 0 <= (last - first).days <= 30:
        raise InvalidInput([{"field": "date_to", "message": str(MESSAGE_SCHEDULE_SPAN)}])
    appointments = schedule_read(
        actor=actor,
        date_from=_local_midnight(first, zone),
        date_to=_local_midnight(last + datetime.timedelta(days=1), zone),
    )
    return Schedule(first_day=first, last_day=last, appointments=appointments)


def schedule_read(
    *, actor: User, date_from: datetime.datetime, date_to: datetime.datetime
) -> list[Appointment]:
    """Booked appointments for staff: a practitioner's own, a clinic admin's clinics'.

    The booking snapshots are personal data: each patient shown gets an audit row.
    """
    if actor.role == Role.PRACTITIONER:
        appointments = Appointment.objects.filter(slot__practitioner=actor)
    elif actor.role == Role.CLINIC_ADMIN:
        appointments = Appointment.objects.filter(
            slot__clinic_id__in=_clinic_ids(actor, Role.CLINIC_ADMIN)
        )
    else:
        raise Forbidden(_("Only practitioners and clinic admins have a schedule."), "forbidden")
    appointments = list(
        appointments.filter(
            status=AppointmentStatus.BOOKED, starts_at__gte=date_from, starts_at__lt=date_to
        )
        .select_related("slot__clinic", "slot__practitioner", "slot__specialty", "motive")
        .order_by("starts_at", "pk")
    )
    with transaction.atomic():
        shown = sorted({(a.patient_id, a.slot.clinic_id) for a in appointments})
        for patient_id, clinic_id in shown:
            send_event(
                action=AuditAction.SCHEDULE_READ,
                actor=actor,
                object_type="booking_snapshot",
                subject_id=patient_id,
                clinic_id=clinic_id,
                purpose="treatment",
            )
    return appointments


# --- A clinic's set-up: opening hours and absences -------------------------------------------


def administered_clinic_ids(user: User) -> list[int]:
    """The clinics `user` administers (as clinic admin)."""
    return _clinic_ids(user, Role.CLINIC_ADMIN)


def practitioners_administered(*, actor: User) -> QuerySet[Membership]:
    """The practitioners' memberships at the clinics `actor` administers."""
    return (
        Membership.objects.filter(
            role=Role.PRACTITIONER, clinic_id__in=administered_clinic_ids(actor)
        )
        .select_related("user", "clinic")
        .order_by("clinic__name", "user__last_name", "user__first_name", "pk")
    )


def opening_hours_administered(*, actor: User) -> QuerySet[OpeningHours]:
    return (
        OpeningHours.objects.filter(membership__in=practitioners_administered(actor=actor))
        .select_related("membership__user", "membership__clinic", "specialty")
        .order_by(
            "membership__clinic__name", "membership__user__last_name", "weekday", "start_time"
        )
    )


def absences_administered(*, actor: User) -> QuerySet[Absence]:
    """Absences that have not ended yet, soonest first."""
    return (
        Absence.objects.filter(
            membership__in=practitioners_administered(actor=actor), ends_at__gt=timezone.now()
        )
        .select_related("membership__user", "membership__clinic")
        .order_by("starts_at", "pk")
    )


def _administered_membership(*, actor: User, membership_id: int) -> Membership:
    membership = practitioners_administered(actor=actor).filter(pk=membership_id).first()
    if membership is None:
        raise NotFound()
    return membership


def _validated(instance):
    """The model's own rules (field limits and check constraints) as an InvalidInput."""
    try:
        instance.full_clean(exclude=["membership"])
    except ValidationError as error:
        raise InvalidInput(
            [
                {"field": "" if field == NON_FIELD_ERRORS else field, "message": str(message)}
                for field, messages in error.message_dict.items()
                for message in messages
            ]
        ) from error
    return instance


MESSAGE_SPECIALTY_NOT_OFFERED = _("The practitioner does not offer this specialty at the clinic.")


@transaction.atomic
def opening_hours_add(
    *,
    actor: User,
    membership_id: int,
    weekday: int,
    start_time: datetime.time,
    end_time: datetime.time,
    slot_minutes: int,
    specialty: Specialty,
) -> OpeningHours:
    """A clinic admin adds weekly hours for a practitioner of their clinic; `generate_slots`
    turns them into slots."""
    membership = _administered_membership(actor=actor, membership_id=membership_id)
    if not membership.specialties.filter(specialty=specialty).exists():
        raise InvalidInput([{"field": "specialty", "message": str(MESSAGE_SPECIALTY_NOT_OFFERED)}])
    hours = _validated(
        OpeningHours(
            membership=membership,
            weekday=weekday,
            start_time=start_time,
            end_time=end_time,
            slot_minutes=slot_minutes,
            specialty=specialty,
        )
    )
    hours.save()
    return hours


@transaction.atomic
def opening_hours_remove(*, actor: User, opening_hours_id: int) -> None:
    """Remove weekly hours; slots already made from them stay (cancel them one by one)."""
    found = opening_hours_administered(actor=actor).filter(pk=opening_hours_id).first()
    if found is None:
        raise NotFound()
    found.delete()


@transaction.atomic
def absence_add(
    *,
    actor: User,
    membership_id: int,
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
) -> Absence:
    """A clinic admin records an absence: `generate_slots` makes no slots in it. Slots made
    before stay (the clinic cancels booked ones)."""
    membership = _administered_membership(actor=actor, membership_id=membership_id)
    absence = _validated(Absence(membership=membership, starts_at=starts_at, ends_at=ends_at))
    absence.save()
    return absence


@transaction.atomic
def absence_remove(*, actor: User, absence_id: int) -> None:
    found = Absence.objects.filter(
        pk=absence_id, membership__in=practitioners_administered(actor=actor)
    ).first()
    if found is None:
        raise NotFound()
    found.delete()


# --- Visit motives -------------------------------------------------------------------------

MESSAGE_MOTIVE_IN_USE = _(
    "Appointments were booked with this visit motive, so it stays. Make it not bookable "
    "online instead (Django admin)."
)

MOTIVE_FIELDS = (
    "name_de",
    "name_en",
    "duration_minutes",
    "bookable_online",
    "patients",
    "accepts_statutory",
    "accepts_private",
    "accepts_self_pay",
    "note_de",
    "note_en",
)


def motives_administered(*, actor: User) -> QuerySet[VisitMotive]:
    """The visit motives of the practitioners at the clinics `actor` administers."""
    return (
        VisitMotive.objects.filter(membership__in=practitioners_administered(actor=actor))
        .select_related("membership__user", "membership__clinic", "specialty")
        .order_by("membership__clinic__name", "membership__user__last_name", "name_de", "pk")
    )


@transaction.atomic
def motive_add(*, actor: User, membership_id: int, specialty: Specialty, **fields) -> VisitMotive:
    """A clinic admin adds a visit motive for a practitioner of their clinic. `fields` are
    those of MOTIVE_FIELDS; the model's rules (duration, some insurance type accepted, a
    specialty the practitioner offers) are field errors."""
    membership = _administered_membership(actor=actor, membership_id=membership_id)
    unknown = set(fields) - set(MOTIVE_FIELDS)
    if unknown:
        raise TypeError(f"unknown motive fields: {sorted(unknown)}")
    motive = VisitMotive(membership=membership, specialty=specialty, **fields)
    _validated(motive)
    motive.save()
    return motive


@transaction.atomic
def motive_remove(*, actor: User, motive_id: int) -> None:
    """Remove a motive nobody booked; one that was booked stays (Conflict `motive_in_use`)."""
    found = motives_administered(actor=actor).filter(pk=motive_id).first()
    if found is None:
        raise NotFound()
    if found.appointments.exists():
        raise Conflict(MESSAGE_MOTIVE_IN_USE, "motive_in_use")
    found.delete()


def motives_bookable(*, practitioner_id: int, clinic_id: int) -> QuerySet[VisitMotive]:
    """The motives patients can book online with one practitioner at one clinic."""
    return VisitMotive.objects.filter(
        membership__user_id=practitioner_id,
        membership__clinic_id=clinic_id,
        bookable_online=True,
    ).order_by("duration_minutes", "name_de", "pk")


# --- Erasure requests (they span accounts, vault and booking, so they start here) ------------


@transaction.atomic
def erasure_request(*, patient: User):
    """GDPR Art. 17: close the account, revoke every token, cancel future appointments and
    file the request an operator completes with `erase_patient` after the retention duty."""
    future = Appointment.objects.filter(
        patient=patient, status=AppointmentStatus.BOOKED, starts_at__gt=timezone.now()
    )
    waitlist.waitlist_close_all(patient=patient, by="erasure_request")
    for appointment in future.select_related("slot__clinic"):
        _cancel(appointment, actor=patient, by="erasure_request")
    return erasure_request_file(patient=patient)
