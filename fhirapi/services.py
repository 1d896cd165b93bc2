"""The FHIR read API's operations: what a token may read of each type, found and shaped once.

They sit on top of every layer (docs/architecture.md) and decide nothing about medical data
themselves: record entries and patients are read through `vault.services` (record_read,
record_entry_read, patient_profile_read: `consent.policy` decides, every decision audited),
appointments through `booking.services`' visibility. What is FHIR's own lives here: the token's
SMART scopes (accounts/scopes.py), the patients its context covers, the search parameters.
"""

import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import scopes
from accounts.models import ApiToken, Clinic, Membership, Role, User
from accounts.services import user_has_login
from audit.models import AuditAction
from audit.signals import send_event
from booking.api import appointment_out
from booking.models import Appointment, PractitionerSpecialty, Slot
from booking.services import appointments_managed_by, appointments_visible_to, staff_clinic_ids
from consent.relatives import active_links
from fhirapi.search import (
    FhirError,
    Search,
    dates_match,
    id_values,
    invalid,
    reference_id,
    tokens_match,
)
from patterm.errors import NotFound
from patterm.numbers import ascii_int
from vault import fhir as mapping
from vault import services as vault
from vault.api import record_entry_out

# The record category behind each clinical resource type (vault/fhir.py maps them).
CATEGORY_OF = {
    "Condition": "diagnosis",
    "AllergyIntolerance": "allergy",
    "MedicationStatement": "medication",
    "Observation": "lab_result",
}
# The date each type's date parameter searches, as named in search.SEARCH_PARAMETERS.
ENTRY_DATE_PARAMETER = {
    "Condition": "recorded-date",
    "AllergyIntolerance": "date",
    "Observation": "date",
}
APPOINTMENT_STATUS_FROM_FHIR = {fhir: ours for ours, fhir in mapping.APPOINTMENT_STATUS.items()}
FHIR_APPOINTMENT_STATUSES = {
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error", "checked-in", "waitlist",
}  # fmt: skip
SLOT_STATUSES = {"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"}

MESSAGE_SCOPE_MISSING = _(
    "This token's scopes do not allow %(permission)s of %(type)s (SMART: %(example)s)."
)
MESSAGE_PATIENT_REQUIRED = _(
    "Give the patient (patient=Patient/<id>): a practitioner searches one record at a time."
)
MESSAGE_ID_REQUIRED = _("Give the patient's _id: staff read one patient at a time.")
MESSAGE_BAD_STATUS = _("%(value)s is not a status of %(type)s.")
PERMISSION_NAMES = {"r": "read", "s": "search"}


@dataclass
class Caller:
    user: User
    token: ApiToken


@dataclass
class Page:
    """One page of a search: the resources, the total there are, and warnings."""

    resources: list[dict]
    total: int
    warnings: list[str] = field(default_factory=list)


def _page(items: list, search: Search) -> list:
    return items[search.offset : search.offset + search.count]


def scope_check(caller: Caller, resource_type: str, permission: str) -> set[str]:
    """The SMART contexts in which the token may `permission` (r, s) the type; none: 403."""
    contexts = scopes.contexts_granted(
        caller.token.scope, resource_type=resource_type, permission=permission
    )
    if not contexts:
        if resource_type in CATEGORY_OF or resource_type == "Patient":
            # A refused read of medical data is audited like every other refusal.
            vault.record_read_refusal_audit(actor=caller.user, patient_id=None, reason="scope")
        raise FhirError(
            403,
            "forbidden",
            str(MESSAGE_SCOPE_MISSING)
            % {
                "permission": PERMISSION_NAMES[permission],
                "type": resource_type,
                "example": f"user/{resource_type}.{permission}",
            },
        )
    return contexts


def context_patient_ids(caller: Caller, contexts: set[str]) -> frozenset[int] | None:
    """The patients a patient's token may concern: themself (`patient/` scopes), and the
    relatives they manage now (`user/` scopes); None for staff (the policy decides)."""
    user = caller.user
    if user.role != Role.PATIENT:
        return None
    ids = {user.pk}
    if scopes.USER in contexts:
        ids |= set(active_links(holder=user).values_list("relative_id", flat=True))
    return frozenset(ids)


def _patient(patient_id: int | None) -> User:
    patient = (
        User.objects.filter(pk=patient_id, role=Role.PATIENT, is_active=True).first()
        if patient_id
        else None
    )
    if patient is None:
        raise NotFound()
    return patient


def _patients_in_context(caller: Caller, allowed: frozenset[int] | None, ids) -> list[User]:
    """The patients a search names (`ids`: numbers, or None: every one the context covers).
    One the token's context does not cover is NotFound, audited as a denied read."""
    if ids is None:
        if allowed is None:
            raise FhirError(400, "required", str(MESSAGE_PATIENT_REQUIRED))
        ids = sorted(allowed)
    patients = []
    for patient_id in ids:
        if allowed is not None and patient_id not in allowed:
            vault.record_read_refusal_audit(
                actor=caller.user, patient_id=patient_id, reason="token_context"
            )
            raise NotFound()
        patients.append(_patient(patient_id))
    return patients


def _patient_param(search: Search) -> list[int] | None:
    values = search.one("patient")
    if values is None:
        return None
    return sorted({reference_id("patient", value, "Patient")[1] for value in values})


# --- Record entries: Condition, AllergyIntolerance, MedicationStatement, Observation ---------


def _entry_json(entry) -> dict:
    return mapping.entry_resource({**record_entry_out(entry), "patient_id": entry.patient_id})


def entry_read(*, caller: Caller, resource_type: str, resource_id: str) -> dict:
    contexts = scope_check(caller, resource_type, "r")
    try:
        entry_id = uuid.UUID(resource_id)
    except ValueError:
        raise NotFound() from None
    entry = vault.record_entry_read(
        actor=caller.user,
        entry_id=entry_id,
        categories=frozenset({CATEGORY_OF[resource_type]}),
        patient_ids=context_patient_ids(caller, contexts),
    )
    return _entry_json(entry)


def entries_search(*, caller: Caller, resource_type: str, search: Search) -> Page:
    """The entries of one category of the named patients (or, for a patient's token, of every
    patient its context covers), each patient's record read once through `record_read`."""
    contexts = scope_check(caller, resource_type, "s")
    allowed = context_patient_ids(caller, contexts)
    patients = _patients_in_context(caller, allowed, _patient_param(search))
    entries = []
    for patient in patients:
        record = vault.record_read(
            actor=caller.user,
            patient=patient,
            categories=frozenset({CATEGORY_OF[resource_type]}),
        )
        if not record.granted:
            raise NotFound()  # no basis at all for this patient: as if there were none
        entries += record.entries
    wanted = id_values(search)
    date_parameter = ENTRY_DATE_PARAMETER.get(resource_type)
    matching = []
    for entry in entries:
        if wanted is not None and str(entry.pk) not in wanted:
            continue
        if date_parameter and not dates_match(search, date_parameter, entry.created_at):
            continue
        if search.all("code") or search.all("category"):
            resource = _entry_json(entry)
            codings = resource.get("code") or resource.get("medicationCodeableConcept") or {}
            if not tokens_match(search, "code", codings.get("coding", [])):
                continue
            categories = [c for concept in resource.get("category", []) for c in concept["coding"]]
            if not tokens_match(search, "category", categories):
                continue
        matching.append(entry)
    matching.sort(key=lambda entry: (entry.created_at, str(entry.pk)), reverse=True)
    return Page([_entry_json(entry) for entry in _page(matching, search)], len(matching))


# --- Patient ---------------------------------------------------------------------------------


def _patient_json(caller: Caller, patient: User) -> dict:
    profile = vault.patient_profile_read(actor=caller.user, patient=patient)
    values = {
        "id": patient.pk,
        # Practitioners get no address: the portal's staff never see one either.
        "email": patient.email
        if caller.user.role == Role.PATIENT and user_has_login(patient)
        else "",
        "first_name": profile.first_name if profile else "",
        "last_name": profile.last_name if profile else "",
        "date_of_birth": profile.date_of_birth if profile else "",
    }
    return mapping.patient_resource(values).model_dump(mode="json", exclude_none=True)


def patient_read(*, caller: Caller, resource_id: str) -> dict:
    contexts = scope_check(caller, "Patient", "r")
    allowed = context_patient_ids(caller, contexts)
    patient_id = ascii_int(resource_id)
    if patient_id is None:
        raise NotFound()
    [patient] = _patients_in_context(caller, allowed, [patient_id])
    return _patient_json(caller, patient)


def patients_search(*, caller: Caller, search: Search) -> Page:
    contexts = scope_check(caller, "Patient", "s")
    allowed = context_patient_ids(caller, contexts)
    wanted = id_values(search)
    if wanted is None and allowed is None:
        raise FhirError(400, "required", str(MESSAGE_ID_REQUIRED))
    ids = (
        sorted(allowed)
        if wanted is None
        else sorted({number for value in wanted if (number := ascii_int(value)) is not None})
    )
    if wanted is not None and not ids:
        return Page([], 0)
    patients = _patients_in_context(caller, allowed, ids)
    return Page([_patient_json(caller, p) for p in _page(patients, search)], len(patients))


# --- Appointment -----------------------------------------------------------------------------


def _appointments_for(caller: Caller, contexts: set[str]):
    user = caller.user
    if user.role == Role.PATIENT:
        if scopes.USER in contexts:  # the holder's relatives' appointments too
            return appointments_managed_by(user).select_related("motive")
        return appointments_visible_to(user)
    return appointments_visible_to(user)


def _appointments_json(caller: Caller, appointments: list[Appointment]) -> list[dict]:
    """The resources, with the staff's read of booking snapshots audited per patient and
    clinic, as the schedule does (the reason is part of the snapshot)."""
    staff_clinics = staff_clinic_ids(caller.user)
    shown = sorted(
        {
            (a.patient_id, a.slot.clinic_id)
            for a in appointments
            if a.slot.clinic_id in staff_clinics
        }
    )
    if caller.user.role != Role.PATIENT and shown:
        with transaction.atomic():
            for patient_id, clinic_id in shown:
                send_event(
                    action=AuditAction.SCHEDULE_READ,
                    actor=caller.user,
                    object_type="booking_snapshot",
                    subject_id=patient_id,
                    clinic_id=clinic_id,
                    purpose="treatment",
                    details={"via": "fhir"},
                )
    return [
        mapping.appointment_resource(
            {
                **appointment_out(a, viewer=caller.user, staff_clinics=staff_clinics),
                "patient_id": a.patient_id,
            }
        )
        for a in appointments
    ]


def appointment_read(*, caller: Caller, resource_id: str) -> dict:
    contexts = scope_check(caller, "Appointment", "r")
    try:
        appointment_id = uuid.UUID(resource_id)
    except ValueError:
        raise NotFound() from None
    appointment = _appointments_for(caller, contexts).filter(pk=appointment_id).first()
    if appointment is None:
        raise NotFound()
    return _appointments_json(caller, [appointment])[0]


def appointments_search(*, caller: Caller, search: Search) -> Page:
    contexts = scope_check(caller, "Appointment", "s")
    appointments = _appointments_for(caller, contexts)
    if (patient_ids := _patient_param(search)) is not None:
        allowed = context_patient_ids(caller, contexts)
        if allowed is not None and not set(patient_ids) <= allowed:
            raise NotFound()
        appointments = appointments.filter(patient_id__in=patient_ids)
    if (wanted := id_values(search)) is not None:
        appointments = appointments.filter(pk__in=_uuids(wanted))
    for values in search.all("date"):
        appointments = appointments.filter(_any(r.as_lookups("starts_at") for r in values))
    if (statuses := search.one("status")) is not None:
        ours = []
        for value in statuses:
            if value.code not in FHIR_APPOINTMENT_STATUSES:
                raise invalid(MESSAGE_BAD_STATUS, value=value.code, type="Appointment")
            ours.append(APPOINTMENT_STATUS_FROM_FHIR.get(value.code))
        appointments = appointments.filter(status__in=[s for s in ours if s])
    appointments = appointments.order_by("-starts_at", "pk")
    total = appointments.count()
    page = list(appointments[search.offset : search.offset + search.count])
    return Page(_appointments_json(caller, page), total)


def _uuids(values) -> list[uuid.UUID]:
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue  # no such id: matches nothing
    return found


def _any(lookups) -> Q:
    condition = Q(pk__in=[])
    for lookup in lookups:
        condition |= Q(**lookup)
    return condition


# --- Slot and Schedule -----------------------------------------------------------------------


def _slots_for(caller: Caller):
    """Free future slots for everyone (what the public search shows); every slot of their
    own clinics for staff."""
    public = Q(is_booked=False, held_for__isnull=True, starts_at__gt=timezone.now())
    staff = staff_clinic_ids(caller.user)
    visible = public | Q(clinic_id__in=sorted(staff)) if staff else public
    return Slot.objects.filter(visible).select_related("clinic", "practitioner", "specialty")


def _slot_status(slot: Slot) -> str:
    if slot.is_booked:
        return "busy"
    if slot.held_for_id is not None:
        return "busy-tentative"  # held for a waiting patient (booking/waitlist.py)
    return "free"


SLOT_STATUS_FILTER = {
    "busy": Q(is_booked=True),
    "busy-tentative": Q(is_booked=False, held_for__isnull=False),
    "free": Q(is_booked=False, held_for__isnull=True),
}


def _slots_json(slots: list[Slot]) -> list[dict]:
    pairs = {(slot.practitioner_id, slot.clinic_id) for slot in slots}
    schedules = {}
    if pairs:
        condition = Q(pk__in=[])
        for user_id, clinic_id in pairs:
            condition |= Q(user_id=user_id, clinic_id=clinic_id)
        schedules = {
            (user_id, clinic_id): pk
            # The Schedules served (`_schedules`): a slot of another keeps only its display, so
            # that every reference resolves.
            for pk, user_id, clinic_id in Membership.objects.filter(
                condition, role=Role.PRACTITIONER, user__is_active=True
            ).values_list("pk", "user_id", "clinic_id")
        }
    return [
        mapping.slot_resource(
            slot,
            schedule_id=schedules.get((slot.practitioner_id, slot.clinic_id)),
            status=_slot_status(slot),
        )
        for slot in slots
    ]


def slot_read(*, caller: Caller, resource_id: str) -> dict:
    scope_check(caller, "Slot", "r")
    slot_id = Slot.pk_from_public_id(resource_id)
    slot = _slots_for(caller).filter(pk=slot_id).first() if slot_id else None
    if slot is None:
        raise NotFound()
    return _slots_json([slot])[0]


def slots_search(*, caller: Caller, search: Search) -> Page:
    scope_check(caller, "Slot", "s")
    slots = _slots_for(caller)
    if (wanted := id_values(search)) is not None:
        slots = slots.filter(
            pk__in=[Slot.pk_from_public_id(v) for v in wanted if Slot.pk_from_public_id(v)]
        )
    if (schedule_values := search.one("schedule")) is not None:
        ids = [reference_id("schedule", value, "Schedule")[1] for value in schedule_values]
        pairs = Membership.objects.filter(pk__in=ids, role=Role.PRACTITIONER).values_list(
            "user_id", "clinic_id"
        )
        condition = Q(pk__in=[])
        for user_id, clinic_id in pairs:
            condition |= Q(practitioner_id=user_id, clinic_id=clinic_id)
        slots = slots.filter(condition)
    for values in search.all("start"):
        slots = slots.filter(_any(r.as_lookups("starts_at") for r in values))
    if (statuses := search.one("status")) is not None:
        condition = Q(pk__in=[])
        for value in statuses:
            if value.code not in SLOT_STATUSES:
                raise invalid(MESSAGE_BAD_STATUS, value=value.code, type="Slot")
            condition |= SLOT_STATUS_FILTER.get(value.code, Q(pk__in=[]))
        slots = slots.filter(condition)
    slots = slots.order_by("starts_at", "pk")
    total = slots.count()
    return Page(_slots_json(list(slots[search.offset : search.offset + search.count])), total)


def _schedules():
    return (
        Membership.objects.filter(role=Role.PRACTITIONER, user__is_active=True)
        .select_related("user", "clinic")
        .order_by("pk")
    )


def _schedules_json(memberships: list[Membership]) -> list[dict]:
    specialties: dict[int, list[str]] = {}
    for offered in (
        PractitionerSpecialty.objects.filter(membership__in=[m.pk for m in memberships])
        .select_related("specialty")
        .order_by("specialty__slug")
    ):
        specialties.setdefault(offered.membership_id, []).append(offered.specialty.name)
    return [
        mapping.schedule_resource(m, specialties=specialties.get(m.pk, [])) for m in memberships
    ]


def schedule_read(*, caller: Caller, resource_id: str) -> dict:
    scope_check(caller, "Schedule", "r")
    schedule_id = ascii_int(resource_id)
    membership = _schedules().filter(pk=schedule_id).first() if schedule_id else None
    if membership is None:
        raise NotFound()
    return _schedules_json([membership])[0]


def schedules_search(*, caller: Caller, search: Search) -> Page:
    scope_check(caller, "Schedule", "s")
    memberships = _schedules()
    if (wanted := id_values(search)) is not None:
        memberships = memberships.filter(
            pk__in=[n for v in wanted if (n := ascii_int(v)) is not None]
        )
    if (actors := search.one("actor")) is not None:
        condition = Q(pk__in=[])
        for value in actors:
            kind, number = reference_id("actor", value, "Practitioner", "Location")
            condition |= Q(user_id=number) if kind == "Practitioner" else Q(clinic_id=number)
        memberships = memberships.filter(condition)
    total = memberships.count()
    page = list(memberships[search.offset : search.offset + search.count])
    return Page(_schedules_json(page), total)


# --- The directory: Practitioner, Organization, Location --------------------------------------
# Public data (decision 0020): the names and addresses the portal's search and practitioner
# pages show anyone. The token needs a scope for the type, as for Slot and Schedule; nothing
# here is medical, so there is no consent decision and no audit row.


def _ids(values) -> list[int]:
    return sorted({number for value in values if (number := ascii_int(value)) is not None})


def _starts_with(search: Search, name: str, *fields: str) -> Q:
    """Every occurrence of a string parameter (AND), any of its values (OR), matching the
    start of any of `fields`, whatever the case (FHIR's default string search)."""
    condition = Q()
    for values in search.all(name):
        any_value = Q(pk__in=[])
        for value in values:
            for field_name in fields:
                any_value |= Q(**{f"{field_name}__istartswith": value})
        condition &= any_value
    return condition


def _practitioners():
    """Everyone who practises or practised at a clinic: their entries and appointments point
    to them. `practising`: a practitioner membership now (FHIR's `active`, with the login)."""
    practises = Membership.objects.filter(user=OuterRef("pk"), role=Role.PRACTITIONER)
    return (
        User.objects.filter(Q(role=Role.PRACTITIONER) | Q(Exists(practises)))
        .annotate(practising=Exists(practises))
        .only("pk", "first_name", "last_name", "is_active")
        .order_by("last_name", "first_name", "pk")
    )


def _practitioner_json(user: User) -> dict:
    return mapping.practitioner_json(user, active=user.is_active and user.practising)


def practitioner_read(*, caller: Caller, resource_id: str) -> dict:
    scope_check(caller, "Practitioner", "r")
    user_id = ascii_int(resource_id)
    user = _practitioners().filter(pk=user_id).first() if user_id else None
    if user is None:
        raise NotFound()
    return _practitioner_json(user)


def practitioners_search(*, caller: Caller, search: Search) -> Page:
    scope_check(caller, "Practitioner", "s")
    users = _practitioners().filter(_starts_with(search, "name", "first_name", "last_name"))
    if (wanted := id_values(search)) is not None:
        users = users.filter(pk__in=_ids(wanted))
    total = users.count()
    page = users[search.offset : search.offset + search.count]
    return Page([_practitioner_json(user) for user in page], total)


def _clinics():
    return Clinic.objects.only("pk", "name", "city", "address").order_by("name", "pk")


def _clinic_read(caller: Caller, resource_type: str, resource_id: str) -> Clinic:
    scope_check(caller, resource_type, "r")
    clinic_id = ascii_int(resource_id)
    clinic = _clinics().filter(pk=clinic_id).first() if clinic_id else None
    if clinic is None:
        raise NotFound()
    return clinic


def _clinics_search(search: Search, *conditions: Q) -> tuple[list[Clinic], int]:
    clinics = _clinics().filter(*conditions)
    if (wanted := id_values(search)) is not None:
        clinics = clinics.filter(pk__in=_ids(wanted))
    return list(clinics[search.offset : search.offset + search.count]), clinics.count()


def organization_read(*, caller: Caller, resource_id: str) -> dict:
    return mapping.organization_json(_clinic_read(caller, "Organization", resource_id))


def organizations_search(*, caller: Caller, search: Search) -> Page:
    scope_check(caller, "Organization", "s")
    clinics, total = _clinics_search(search, _starts_with(search, "name", "name"))
    return Page([mapping.organization_json(clinic) for clinic in clinics], total)


def location_read(*, caller: Caller, resource_id: str) -> dict:
    return mapping.location_json(_clinic_read(caller, "Location", resource_id))


def locations_search(*, caller: Caller, search: Search) -> Page:
    scope_check(caller, "Location", "s")
    conditions = [_starts_with(search, "address-city", "city")]
    for values in search.all("organization"):
        ids = [reference_id("organization", value, "Organization")[1] for value in values]
        conditions.append(Q(pk__in=ids))
    clinics, total = _clinics_search(search, *conditions)
    return Page([mapping.location_json(clinic) for clinic in clinics], total)


READS = {
    "Patient": patient_read,
    "Appointment": appointment_read,
    "Slot": slot_read,
    "Schedule": schedule_read,
    "Practitioner": practitioner_read,
    "Organization": organization_read,
    "Location": location_read,
}
SEARCHES = {
    "Patient": patients_search,
    "Appointment": appointments_search,
    "Slot": slots_search,
    "Schedule": schedules_search,
    "Practitioner": practitioners_search,
    "Organization": organizations_search,
    "Location": locations_search,
}


def resource_read(*, caller: Caller, resource_type: str, resource_id: str) -> dict:
    if resource_type in CATEGORY_OF:
        return entry_read(caller=caller, resource_type=resource_type, resource_id=resource_id)
    return READS[resource_type](caller=caller, resource_id=resource_id)


def resource_search(*, caller: Caller, resource_type: str, search: Search) -> Page:
    if resource_type in CATEGORY_OF:
        return entries_search(caller=caller, resource_type=resource_type, search=search)
    return SEARCHES[resource_type](caller=caller, search=search)
