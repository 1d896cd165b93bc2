"""Search by visit motive (issue 16): practitioners as cards with a week of free start times
where the whole motive fits, paged by practitioner; and the SQL filter the API's slot search
uses for one motive. How a motive's duration maps onto slots: decision 0013.

The grouped search reads a fixed number of queries whatever the number of practitioners shown:
the page of practitioners (and its count), their motives, the patient's care relationships at
their clinics, their free slots in the week, and, only for cards whose week is empty, their
free slots up to `NEXT_FREE_HORIZON_DAYS` ahead.
"""

import datetime
import math
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.models import Membership, Role, User
from booking.models import MotivePatients, OpeningHours, Slot, VisitMotive
from consent.models import CareRelationship

NEXT_FREE_HORIZON_DAYS = 90
WEEK_DAYS = 7


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=ZoneInfo(settings.TIME_ZONE))


def motive_rule_filter(*, insurance_type: str | None, known: bool | None, prefix: str = "") -> Q:
    """Online motives open to this insurance type and to new (`known=False`) or known
    patients; None: either."""
    condition = Q(**{f"{prefix}bookable_online": True})
    if insurance_type in VisitMotive.INSURANCE_FLAGS:
        condition &= Q(**{f"{prefix}{VisitMotive.INSURANCE_FLAGS[insurance_type]}": True})
    if known is not None:
        admitted = [MotivePatients.BOTH, MotivePatients.KNOWN if known else MotivePatients.NEW]
        condition &= Q(**{f"{prefix}patients__in": admitted})
    return condition


# --- One motive, in SQL (the API's slot search) ---------------------------------------------


def _grid_minutes(membership_id: int) -> int:
    """The shortest slot of the practitioner's opening hours (20 when they have none)."""
    lengths = OpeningHours.objects.filter(membership_id=membership_id).values_list(
        "slot_minutes", flat=True
    )
    return min(lengths, default=20)


def _next_slot(depth: int, levels: int) -> QuerySet[Slot]:
    """The free slot that starts where the outer one ends (same practitioner, clinic and
    specialty), which either reaches the motive's end or is followed by one that does."""
    motive_end = "motive_end"
    for _ in range(depth):
        motive_end = OuterRef(motive_end)
    following = Slot.objects.filter(
        practitioner_id=OuterRef("practitioner_id"),
        clinic_id=OuterRef("clinic_id"),
        specialty_id=OuterRef("specialty_id"),
        starts_at=OuterRef("ends_at"),
        is_booked=False,
        held_for=None,
    )
    reached = Q(ends_at__gte=motive_end)
    if depth < levels:
        reached |= Exists(_next_slot(depth + 1, levels))
    return following.filter(reached)


def slots_where_motive_fits(slots: QuerySet[Slot], motive: VisitMotive) -> QuerySet[Slot]:
    """`slots` (free ones) of the motive's practitioner, clinic and specialty from which the
    motive's duration is covered by consecutive free slots. The chain is as deep as the
    practitioner's shortest slot needs; each step is an index lookup on
    (practitioner, starts_at)."""
    duration = datetime.timedelta(minutes=motive.duration_minutes)
    levels = max(0, math.ceil(motive.duration_minutes / _grid_minutes(motive.membership_id)) - 1)
    slots = slots.filter(
        practitioner_id=motive.membership.user_id,
        clinic_id=motive.membership.clinic_id,
        specialty_id=motive.specialty_id,
    ).annotate(motive_end=F("starts_at") + duration)
    reached = Q(ends_at__gte=F("motive_end"))
    if levels:
        reached |= Exists(_next_slot(1, levels))
    return slots.filter(reached)


# --- Cards: practitioners with a week of times ----------------------------------------------


@dataclass
class Card:
    membership: Membership
    motives: list[VisitMotive]
    motive: VisitMotive | None
    known: bool | None
    days: list[dict] = field(default_factory=list)
    next_free: datetime.datetime | None = None

    @property
    def has_times(self) -> bool:
        return any(day["slots"] for day in self.days)


def fitting_starts(slots: list[Slot], minutes: int | None) -> list[Slot]:
    """The slots (one practitioner's free ones, by start) from which `minutes` are covered by
    consecutive slots of the same clinic and specialty (decision 0013)."""
    if not minutes:
        return list(slots)
    duration = datetime.timedelta(minutes=minutes)
    fitting = []
    for index, start in enumerate(slots):
        end, needed = start.ends_at, start.starts_at + duration
        for following in slots[index + 1 :]:
            if end >= needed:
                break
            if (
                following.starts_at != end
                or following.clinic_id != start.clinic_id
                or following.specialty_id != start.specialty_id
            ):
                break
            end = following.ends_at
        if end >= needed:
            fitting.append(start)
    return fitting


def practitioners_found(
    *,
    specialty: str | None,
    city: str | None,
    insurance_type: str | None,
    known: bool | None,
) -> QuerySet[Membership]:
    """The practitioners (memberships) a search lists, by name: offering `specialty`, in
    `city`, and with an online motive that fits the rules (or no motives at all: then any
    free slot is bookable, as before motives)."""
    found = Membership.objects.filter(role=Role.PRACTITIONER).select_related("user", "clinic")
    if specialty:
        found = found.filter(specialties__specialty__slug=specialty)
    if city:
        found = found.filter(clinic__city__iexact=city)
    motives = VisitMotive.objects.filter(membership=OuterRef("pk"))
    if specialty:
        motives = motives.filter(specialty__slug=specialty)
    found = found.filter(
        ~Exists(motives)
        | Exists(motives.filter(motive_rule_filter(insurance_type=insurance_type, known=known)))
    )
    return found.order_by("user__last_name", "user__first_name", "clinic__name", "pk")


def cards_build(
    memberships: list[Membership],
    *,
    specialty: str | None,
    insurance_type: str | None,
    known: bool | None,
    patient: User | None,
    first_day: datetime.date,
    chosen_motive: int | None = None,
) -> list[Card]:
    """A card per membership: its bookable motives, the chosen one (`chosen_motive` if it is
    theirs, else the first that fits the rules, the shortest), the week from `first_day` as
    days of start times where that motive fits, and the next free time after the week."""
    if not memberships:
        return []
    ids = [m.pk for m in memberships]
    motives = VisitMotive.objects.filter(membership_id__in=ids, bookable_online=True)
    if specialty:
        motives = motives.filter(specialty__slug=specialty)
    motives = list(
        motives.select_related("specialty").order_by("duration_minutes", "name_de", "pk")
    )
    known_at = set()
    if patient is not None and patient.is_authenticated and patient.role == Role.PATIENT:
        known_at = set(
            CareRelationship.objects.filter(
                patient=patient, clinic_id__in={m.clinic_id for m in memberships}
            ).values_list("clinic_id", flat=True)
        )
    signed_in_patient = (
        patient is not None and patient.is_authenticated and patient.role == Role.PATIENT
    )
    cards = []
    for membership in memberships:
        own = [m for m in motives if m.membership_id == membership.pk]
        # Known or new is asked only of someone whose answer the portal does not know.
        is_known = membership.clinic_id in known_at if signed_in_patient else known
        eligible = [
            m
            for m in own
            if (is_known is None or m.admits(known=is_known))
            and (not insurance_type or m.accepts(insurance_type))
        ]
        chosen = next((m for m in eligible if m.pk == chosen_motive), None) or (
            eligible[0] if eligible else None
        )
        cards.append(Card(membership=membership, motives=eligible, motive=chosen, known=is_known))
    week_from, week_to = (
        _local_midnight(first_day),
        _local_midnight(first_day + datetime.timedelta(days=WEEK_DAYS)),
    )
    longest = max((c.motive.duration_minutes for c in cards if c.motive), default=0)
    free = _free_of(cards, specialty, week_from, week_to + datetime.timedelta(minutes=longest))
    for card in cards:
        starts = [
            s
            for s in fitting_starts(free.get(_key(card.membership), []), _minutes(card))
            if s.starts_at < week_to
        ]
        card.days = _week(starts, first_day)
    empty = [card for card in cards if not card.has_times]
    if empty:
        later = _free_of(
            empty,
            specialty,
            week_to,
            week_to + datetime.timedelta(days=NEXT_FREE_HORIZON_DAYS),
        )
        for card in empty:
            starts = fitting_starts(later.get(_key(card.membership), []), _minutes(card))
            card.next_free = starts[0].starts_at if starts else None
    return cards


def _key(membership: Membership) -> tuple[int, int]:
    return membership.user_id, membership.clinic_id


def _minutes(card: Card) -> int | None:
    return card.motive.duration_minutes if card.motive else None


def _free_of(cards, specialty, since, until) -> dict[tuple[int, int], list[Slot]]:
    """Free, unheld future slots of the cards' practitioners between two times, by
    (practitioner, clinic): one query."""
    condition = Q()
    for card in cards:
        condition |= Q(practitioner_id=card.membership.user_id, clinic_id=card.membership.clinic_id)
    slots = Slot.objects.filter(
        condition,
        is_booked=False,
        held_for=None,
        starts_at__gt=max(since, timezone.now()),
        starts_at__lt=until,
    )
    if specialty:
        slots = slots.filter(specialty__slug=specialty)
    grouped: dict[tuple[int, int], list[Slot]] = {}
    for slot in slots.only(
        "pk", "practitioner_id", "clinic_id", "specialty_id", "starts_at", "ends_at"
    ).order_by("starts_at", "pk"):
        grouped.setdefault((slot.practitioner_id, slot.clinic_id), []).append(slot)
    return grouped


def _week(starts: list[Slot], first_day: datetime.date) -> list[dict]:
    by_day: dict[datetime.date, list[Slot]] = {}
    for slot in starts:
        by_day.setdefault(timezone.localtime(slot.starts_at).date(), []).append(slot)
    days = (first_day + datetime.timedelta(days=n) for n in range(WEEK_DAYS))
    return [{"day": day, "slots": by_day.get(day, [])} for day in days]


def practitioner_get(*, membership_id: int) -> Membership:
    """A practitioner's public page: their membership with clinic and specialties."""
    from patterm.errors import NotFound

    found = (
        Membership.objects.filter(pk=membership_id, role=Role.PRACTITIONER)
        .select_related("user", "clinic")
        .prefetch_related(Prefetch("specialties__specialty"))
        .first()
    )
    if found is None:
        raise NotFound()
    return found
