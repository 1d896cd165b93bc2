"""The waitlist: patients wait for a specialty, and a slot that becomes free is offered to them.

A freed slot (a cancellation, or new slots created) goes to the first matching waiting patient in
order of joining: the slot is held for them alone (`Slot.held_for`, `held_until`) for
PATTERM_WAITLIST_HOLD_MINUTES, and an e-mail links to the offer. Confirming books it through
`booking.services.appointment_book`, whose one conditional UPDATE claims only a free slot that is
unheld or held for the booking patient, so the single-booking guarantee holds. A declined or
expired offer passes the slot to the next patient waiting; without one the slot returns to free
search. Expired holds are processed by `manage.py process_waitlist` and lazily when the slot is
next touched (a booking attempt, the offer read or confirmed, the patient's waitlist listed).

Locks are taken in one order everywhere: the slot's row (the conditional UPDATE that holds or
releases it), then the offer, then the entry; entries are picked with SKIP LOCKED, so an entry
being left or offered another slot at that moment is passed over instead of waited for.
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic, Membership, Role, User
from audit.models import AuditAction
from audit.signals import send_event
from booking import services
from booking.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    Slot,
    Specialty,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistStatus,
)
from patterm.errors import Conflict, Forbidden, InvalidInput, NotFound

MESSAGE_ONLY_PATIENTS = _("Only patients can join a waitlist.")
MESSAGE_TOO_MANY = _("You are on %(most)s waitlists already. Please leave one first.")
MESSAGE_UNKNOWN_SPECIALTY = _("There is no such specialty.")
MESSAGE_UNKNOWN_CLINIC = _("There is no such clinic.")
MESSAGE_UNKNOWN_PRACTITIONER = _("There is no such practitioner.")
MESSAGE_DATES_ORDER = _("The end of the date range lies before its start.")
MESSAGE_DATE_PAST = _("The date range has ended already.")
MESSAGE_OFFER_EXPIRED = _("This offer has expired; the slot was passed on.")
MESSAGE_OFFER_CLOSED = _("This offer is not open any more.")

ACTIVE = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


def hold_duration() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.PATTERM_WAITLIST_HOLD_MINUTES)


def _local_day(moment: datetime.datetime) -> datetime.date:
    return timezone.localtime(moment).date()


def _no_overlapping_booking(patient_ref, starts_at, ends_at) -> Q:
    """The patient (a field reference or a value) has no booked appointment at that time."""
    return ~Exists(
        Appointment.objects.filter(
            patient=patient_ref,
            status=AppointmentStatus.BOOKED,
            starts_at__lt=ends_at,
            ends_at__gt=starts_at,
        )
    )


def _entries_matching(slot: Slot) -> QuerySet[WaitlistEntry]:
    """Waiting entries `slot` suits, first joined first; never one offered this slot before."""
    day = _local_day(slot.starts_at)
    return (
        WaitlistEntry.objects.filter(
            Q(city="") | Q(city__iexact=slot.clinic.city),
            Q(clinic=None) | Q(clinic_id=slot.clinic_id),
            Q(practitioner=None) | Q(practitioner_id=slot.practitioner_id),
            Q(date_from=None) | Q(date_from__lte=day),
            Q(date_to=None) | Q(date_to__gte=day),
            _no_overlapping_booking(OuterRef("patient"), slot.starts_at, slot.ends_at),
            status=WaitlistStatus.WAITING,
            specialty_id=slot.specialty_id,
            patient__is_active=True,
        )
        .exclude(Exists(WaitlistOffer.objects.filter(entry=OuterRef("pk"), slot=slot)))
        .select_related("patient")
        .order_by("joined_at", "id")
    )


def _slots_matching(entry: WaitlistEntry, slots: QuerySet[Slot]) -> QuerySet[Slot]:
    """Free, unheld slots among `slots` that suit `entry`, earliest first."""
    slots = slots.filter(
        _no_overlapping_booking(entry.patient_id, OuterRef("starts_at"), OuterRef("ends_at")),
        is_booked=False,
        held_for=None,
        starts_at__gt=timezone.now() + hold_duration(),
        specialty_id=entry.specialty_id,
    )
    if entry.city:
        slots = slots.filter(clinic__city__iexact=entry.city)
    if entry.clinic_id:
        slots = slots.filter(clinic_id=entry.clinic_id)
    if entry.practitioner_id:
        slots = slots.filter(practitioner_id=entry.practitioner_id)
    zone = timezone.get_current_timezone()
    if entry.date_from:
        slots = slots.filter(
            starts_at__gte=datetime.datetime.combine(entry.date_from, datetime.time(), zone)
        )
    if entry.date_to:
        end = datetime.datetime.combine(
            entry.date_to + datetime.timedelta(days=1), datetime.time(), zone
        )
        slots = slots.filter(starts_at__lt=end)
    return slots.exclude(Exists(WaitlistOffer.objects.filter(entry=entry, slot=OuterRef("pk"))))


# --- Offering a slot --------------------------------------------------------------------------


def _offer_make(*, slot: Slot, entry: WaitlistEntry, cause: str) -> WaitlistOffer | None:
    """Hold `slot` for `entry`'s patient and record the offer (in the caller's transaction,
    with `entry` locked); None when the slot is no longer free and unheld."""
    now = timezone.now()
    expires_at = now + hold_duration()
    held = Slot.objects.filter(pk=slot.pk, is_booked=False, held_for=None).update(
        held_for_id=entry.patient_id, held_until=expires_at
    )
    if not held:
        return None
    offer = WaitlistOffer.objects.create(
        entry=entry, slot=slot, offered_at=now, expires_at=expires_at
    )
    entry.status = WaitlistStatus.OFFERED
    entry.save(update_fields=["status"])
    send_event(
        action=AuditAction.WAITLIST_OFFER,
        object_type="waitlist_offer",
        object_id=offer.pk,
        subject_id=entry.patient_id,
        clinic_id=slot.clinic_id,
        details={"slot": slot.public_id, "cause": cause},
    )
    email, language = entry.patient.email, entry.patient.language
    transaction.on_commit(lambda: _send_offer(offer=offer, to=email, language=language))
    return offer


def slot_offer(*, slot: Slot, cause: str, not_to: int | None = None) -> WaitlistOffer | None:
    """Offer a slot that has just become free to the first matching waiting patient (never to
    the patient `not_to`, who has just cancelled it).

    Runs in the caller's transaction, which holds the slot's row (it has just freed or created
    it). A slot that starts within the hold time is not offered: it stays in free search.
    """
    if slot.starts_at <= timezone.now() + hold_duration():
        return None
    entries = _entries_matching(slot).exclude(patient_id=not_to)
    entry = entries.select_for_update(of=("self",), skip_locked=True).first()
    return _offer_make(slot=slot, entry=entry, cause=cause) if entry else None


def slots_offer(*, slots: list[Slot], cause: str = "new_slots") -> int:
    """Offer newly created slots: each waiting patient, in order of joining, gets the earliest
    new slot that suits them. Runs in the caller's transaction; returns how many were offered."""
    if not slots:
        return 0
    specialties = {slot.specialty_id for slot in slots}
    waiting = WaitlistEntry.objects.filter(
        status=WaitlistStatus.WAITING, specialty_id__in=specialties, patient__is_active=True
    ).order_by("joined_at", "id")
    candidates = Slot.objects.filter(pk__in=[slot.pk for slot in slots])
    offered = 0
    for entry_id in waiting.values_list("pk", flat=True).iterator():
        entry = (
            WaitlistEntry.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("patient")
            .filter(pk=entry_id, status=WaitlistStatus.WAITING)
            .first()
        )
        if entry is None:
            continue
        slot = (
            _slots_matching(entry, candidates)
            .select_related("clinic")
            .order_by("starts_at", "pk")
            .first()
        )
        if slot is not None and _offer_make(slot=slot, entry=entry, cause=cause):
            offered += 1
    return offered


# --- Closing an offer -------------------------------------------------------------------------


def _offer_close(*, offer: WaitlistOffer, status: str, actor: User | None, by: str = "") -> bool:
    """Release the slot of an open offer, mark the offer `status` and the entry waiting again,
    pass the slot on; False (changing nothing) when the offer was closed meanwhile.

    In the caller's transaction. The slot's conditional UPDATE comes first: whoever changes
    the hold owns the offer.
    """
    now = timezone.now()
    released = Slot.objects.filter(
        pk=offer.slot_id, is_booked=False, held_for_id=offer.entry.patient_id
    )
    if status == OfferStatus.EXPIRED:
        released = released.filter(held_until__lte=now)
    if not released.update(held_for=None, held_until=None):
        return False
    if not WaitlistOffer.objects.filter(pk=offer.pk, status=OfferStatus.OPEN).update(
        status=status, decided_at=now
    ):  # the hold and its offer change together: roll the release back rather than split them
        raise RuntimeError(f"slot {offer.slot_id} was held without an open offer")
    WaitlistEntry.objects.filter(pk=offer.entry_id, status=WaitlistStatus.OFFERED).update(
        status=WaitlistStatus.WAITING
    )
    offer.status, offer.decided_at = status, now
    slot = Slot.objects.select_related("clinic").get(pk=offer.slot_id)
    action = (
        AuditAction.WAITLIST_OFFER_EXPIRE
        if status == OfferStatus.EXPIRED
        else AuditAction.WAITLIST_OFFER_DECLINE
    )
    send_event(
        action=action,
        actor=actor,
        object_type="waitlist_offer",
        object_id=offer.pk,
        subject_id=offer.entry.patient_id,
        clinic_id=slot.clinic_id,
        details={"slot": slot.public_id, **({"by": by} if by else {})},
    )
    offer.passed_on = slot_offer(slot=slot, cause="passed_on") is not None
    return True


@dataclass
class ExpiryRun:
    expired: int = 0
    passed_on: int = 0
    returned: int = 0


def _due_offers(now: datetime.datetime) -> QuerySet[WaitlistOffer]:
    return WaitlistOffer.objects.filter(status=OfferStatus.OPEN, expires_at__lte=now)


def offer_expire(*, offer_id) -> bool | None:
    """Expire one open offer whose time is up, in its own transaction: True when the slot went
    to the next patient, False when it returned to free search, None when nothing was due."""
    with transaction.atomic():
        offer = _due_offers(timezone.now()).select_related("entry").filter(pk=offer_id).first()
        if offer is None or not _offer_close(offer=offer, status=OfferStatus.EXPIRED, actor=None):
            return None
        return offer.passed_on


def offers_expire(*, progress=None) -> ExpiryRun:
    """Expire every open offer whose hold has ended (`manage.py process_waitlist`)."""
    run = ExpiryRun()
    due = list(_due_offers(timezone.now()).order_by("expires_at").values_list("pk", flat=True))
    for offer_id in progress(due) if progress else due:
        outcome = offer_expire(offer_id=offer_id)
        if outcome is None:
            continue
        run.expired += 1
        if outcome:
            run.passed_on += 1
        else:
            run.returned += 1
    return run


def hold_ended(slot: Slot) -> bool:
    """The slot (as read) is held and its hold is over: `hold_expire_if_due` has work. An open
    offer's end is its slot's `held_until` (set together, `_offer_make`), so a slot held for
    nobody has no offer to expire and costs the booking no query."""
    return slot.held_until is not None and slot.held_until <= timezone.now()


def hold_expire_if_due(*, slot_pk: int) -> None:
    """The lazy path: a slot being touched whose hold has ended is passed on first."""
    now = timezone.now()
    for offer_id in _due_offers(now).filter(slot_id=slot_pk).values_list("pk", flat=True):
        offer_expire(offer_id=offer_id)


def offer_fulfil(*, slot: Slot, patient: User, appointment: Appointment) -> None:
    """`appointment_book` claimed a slot held for `patient`: their open offer is confirmed and
    their entry booked (in the booking's transaction, which holds the slot)."""
    offer = (
        WaitlistOffer.objects.select_related("entry")
        .filter(slot=slot, status=OfferStatus.OPEN, entry__patient=patient)
        .first()
    )
    if offer is None:
        return
    now = timezone.now()
    offer.status, offer.decided_at, offer.appointment = OfferStatus.CONFIRMED, now, appointment
    offer.save(update_fields=["status", "decided_at", "appointment"])
    WaitlistEntry.objects.filter(pk=offer.entry_id).update(
        status=WaitlistStatus.BOOKED, left_at=now
    )
    send_event(
        action=AuditAction.WAITLIST_OFFER_CONFIRM,
        actor=patient,
        object_type="waitlist_offer",
        object_id=offer.pk,
        subject_id=patient.pk,
        clinic_id=slot.clinic_id,
        details={"slot": slot.public_id, "appointment": str(appointment.pk)},
    )


# --- The patient's side -----------------------------------------------------------------------


def _open_offers() -> Prefetch:
    return Prefetch(
        "offers",
        queryset=WaitlistOffer.objects.filter(status=OfferStatus.OPEN).select_related(
            "slot__clinic", "slot__practitioner", "slot__specialty"
        ),
        to_attr="open_offers",
    )


def waitlist_entries(*, patient: User) -> QuerySet[WaitlistEntry]:
    """The patient's entries that are waiting or have an open offer, first joined first, each
    with `open_offers`; expired holds of theirs are processed first."""
    for offer_id in (
        _due_offers(timezone.now()).filter(entry__patient=patient).values_list("pk", flat=True)
    ):
        offer_expire(offer_id=offer_id)
    return (
        WaitlistEntry.objects.filter(patient=patient, status__in=ACTIVE)
        .select_related("specialty", "clinic", "practitioner")
        .prefetch_related(_open_offers())
        .order_by("joined_at", "id")
    )


def waitlist_entry_get(*, patient: User, entry_id) -> WaitlistEntry:
    entry = waitlist_entries(patient=patient).filter(pk=entry_id).first()
    if entry is None:
        raise NotFound()
    return entry


@transaction.atomic
def waitlist_join(
    *,
    patient: User,
    specialty: str,
    city: str = "",
    clinic_id: int | None = None,
    practitioner_id: int | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> WaitlistEntry:
    """Put `patient` on the waitlist for a specialty (audited); offers come as slots free up."""
    if patient.role != Role.PATIENT:
        raise Forbidden(MESSAGE_ONLY_PATIENTS, "not_a_patient")
    errors = []
    found_specialty = Specialty.objects.filter(slug=specialty).first()
    if found_specialty is None:
        errors.append({"field": "specialty", "message": str(MESSAGE_UNKNOWN_SPECIALTY)})
    clinic = Clinic.objects.filter(pk=clinic_id).first() if clinic_id else None
    if clinic_id and clinic is None:
        errors.append({"field": "clinic", "message": str(MESSAGE_UNKNOWN_CLINIC)})
    if (
        practitioner_id
        and not Membership.objects.filter(user_id=practitioner_id, role=Role.PRACTITIONER).exists()
    ):
        errors.append({"field": "practitioner", "message": str(MESSAGE_UNKNOWN_PRACTITIONER)})
    if date_from and date_to and date_to < date_from:
        errors.append({"field": "date_to", "message": str(MESSAGE_DATES_ORDER)})
    if date_to and date_to < timezone.localdate():
        errors.append({"field": "date_to", "message": str(MESSAGE_DATE_PAST)})
    if errors:
        raise InvalidInput(errors)
    # One join at a time per patient, so that the limit below cannot be raced past.
    User.objects.select_for_update(no_key=True).filter(pk=patient.pk).exists()
    most = settings.PATTERM_WAITLIST_MAX_ENTRIES
    if WaitlistEntry.objects.filter(patient=patient, status__in=ACTIVE).count() >= most:
        raise Conflict(MESSAGE_TOO_MANY % {"most": most}, "waitlist_limit")
    entry = WaitlistEntry.objects.create(
        patient=patient,
        specialty=found_specialty,
        city=city.strip(),
        clinic=clinic,
        practitioner_id=practitioner_id,
        date_from=date_from,
        date_to=date_to,
    )
    send_event(
        action=AuditAction.WAITLIST_JOIN,
        actor=patient,
        object_type="waitlist_entry",
        object_id=entry.pk,
        subject_id=patient.pk,
        clinic_id=clinic_id,
    )
    return entry


def waitlist_leave(*, patient: User, entry_id, by: str = "patient") -> None:
    """Leave the waitlist; an open offer is declined and its slot passed on (audited)."""
    with transaction.atomic():
        entry = WaitlistEntry.objects.filter(pk=entry_id, patient=patient, status__in=ACTIVE)
        entry = entry.first()
        if entry is None:
            raise NotFound()
        for offer in entry.offers.filter(status=OfferStatus.OPEN).select_related("entry"):
            _offer_close(offer=offer, status=OfferStatus.DECLINED, actor=patient, by="leave")
        left = WaitlistEntry.objects.filter(pk=entry.pk, status__in=ACTIVE).update(
            status=WaitlistStatus.LEFT, left_at=timezone.now()
        )
        if not left:
            raise NotFound()  # booked or left meanwhile
        send_event(
            action=AuditAction.WAITLIST_LEAVE,
            actor=patient,
            object_type="waitlist_entry",
            object_id=entry.pk,
            subject_id=patient.pk,
            clinic_id=entry.clinic_id,
            details={"by": by},
        )


def waitlist_close_all(*, patient: User, by: str) -> None:
    """Leave every waitlist of `patient` (an erasure request closes the account)."""
    ids = WaitlistEntry.objects.filter(patient=patient, status__in=ACTIVE).values_list(
        "pk", flat=True
    )
    for entry_id in list(ids):
        waitlist_leave(patient=patient, entry_id=entry_id, by=by)


def _own_offer(*, patient: User, offer_id) -> WaitlistOffer:
    offer = (
        WaitlistOffer.objects.select_related(
            "entry", "slot__clinic", "slot__practitioner", "slot__specialty"
        )
        .filter(pk=offer_id, entry__patient=patient)
        .first()
    )
    if offer is None:
        raise NotFound()
    return offer


def offer_get(*, patient: User, offer_id) -> WaitlistOffer:
    """One of the patient's offers (someone else's: NotFound); an ended hold is processed."""
    offer = _own_offer(patient=patient, offer_id=offer_id)
    if offer.status == OfferStatus.OPEN and offer.expires_at <= timezone.now():
        offer_expire(offer_id=offer.pk)
        offer = _own_offer(patient=patient, offer_id=offer_id)
    return offer


def _closed(offer: WaitlistOffer) -> Conflict:
    if offer.status == OfferStatus.EXPIRED:
        return Conflict(MESSAGE_OFFER_EXPIRED, "offer_expired")
    return Conflict(MESSAGE_OFFER_CLOSED, "offer_closed")


def offer_confirm(*, patient: User, offer_id, reason: str = "") -> Appointment:
    """Book the offered slot through the booking service (the same single-booking guarantee)."""
    offer = offer_get(patient=patient, offer_id=offer_id)
    if offer.status != OfferStatus.OPEN:
        raise _closed(offer)
    try:
        return services.appointment_book(
            patient=patient, slot_id=offer.slot.public_id, reason=reason
        )
    except Conflict as conflict:
        offer = _own_offer(patient=patient, offer_id=offer_id)
        if conflict.code == "slot_taken" and offer.status != OfferStatus.OPEN:
            raise _closed(offer) from conflict
        raise


def offer_decline(*, patient: User, offer_id) -> WaitlistOffer:
    """Decline: the slot goes to the next patient waiting; the patient keeps waiting."""
    offer = offer_get(patient=patient, offer_id=offer_id)
    if offer.status != OfferStatus.OPEN:
        raise _closed(offer)
    with transaction.atomic():
        if not _offer_close(offer=offer, status=OfferStatus.DECLINED, actor=patient, by="patient"):
            raise _closed(_own_offer(patient=patient, offer_id=offer_id))
    return _own_offer(patient=patient, offer_id=offer_id)


# --- The offer e-mail -------------------------------------------------------------------------


def offer_url(offer: WaitlistOffer) -> str:
    """The page that shows the offer and confirms it (booking/views.py)."""
    path = reverse("booking:waitlist_offer", kwargs={"offer_id": offer.pk})
    return settings.PATTERM_PUBLIC_URL.rstrip("/") + path


def _send_offer(*, offer: WaitlistOffer, to: str, language: str | None) -> None:
    """Time, clinic, address, the hold's end and the link; no name, reason or medical content."""
    slot = offer.slot
    local_start = timezone.localtime(slot.starts_at)
    with translation.override(language):
        context = {
            "starts_at": local_start,
            "clinic": slot.clinic,
            "expires_at": timezone.localtime(offer.expires_at),
            "offer_url": offer_url(offer),
        }
        send_mail(
            subject=str(
                _("A slot has become free on %(date)s") % {"date": f"{local_start:%d.%m.%Y}"}
            ),
            message=render_to_string("booking/waitlist_offer_email.txt", context),
            from_email=None,
            recipient_list=[to],
        )
