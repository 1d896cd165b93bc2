"""The one place that decides who may see which part of a patient's medical record.

Everything that reads medical data asks here: `decide` for one entry, `grants` for a list (as
`Q` objects over plain field names, so `vault` filters in one query and `consent` never imports
`vault`). The caller audits every decision, allowed or denied.

The bases, strongest first:
- `self`: the patient reads their own record;
- `holder`: the account holder of a relative (decision 0014) reads the relative's record, while
  the link is active: it ends, for every session and token of the holder, when the relative
  takes over;
- `own_clinic`: a practitioner reads what their clinic wrote, for a patient in care there;
- `consent`: an active consent of the patient for the practitioner's clinic, covering the
  entry's category and authoring clinic;
- `emergency`: the practitioner declared emergency access to this patient, not yet ended.
Clinic admins, auditors and everyone else have no basis: they never see record content.
"""

from dataclasses import dataclass

from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, Role, User
from consent.models import CareRelationship, Consent, EmergencyAccess, RelativeLink


class Basis(models.TextChoices):
    SELF = "self", _("The patient themself")
    HOLDER = "holder", _("Your account holder, acting for you")
    OWN_CLINIC = "own_clinic", _("Written by the reader's clinic")
    CONSENT = "consent", _("The patient's consent")
    EMERGENCY = "emergency", _("Declared emergency access")


class Purpose(models.TextChoices):
    TREATMENT = "treatment", _("Treatment")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str | None
    reason: str


@dataclass(frozen=True)
class Grant:
    """Entries written by `clinic_ids` in `categories` may be read on `basis` (None: any)."""

    basis: str
    clinic_ids: frozenset[int] | None = None
    categories: frozenset[str] | None = None

    def covers(self, *, clinic_id: int, category: str) -> bool:
        return (self.clinic_ids is None or clinic_id in self.clinic_ids) and (
            self.categories is None or category in self.categories
        )

    def as_q(self, *, clinic_field: str = "clinic_id", category_field: str = "category") -> Q:
        condition = Q()
        if self.clinic_ids is not None:
            condition &= Q(**{f"{clinic_field}__in": sorted(self.clinic_ids)})
        if self.categories is not None:
            condition &= Q(**{f"{category_field}__in": sorted(self.categories)})
        return condition


def grants(*, actor: User, patient: User, purpose: str = Purpose.TREATMENT) -> list[Grant]:
    """What `actor` may read of `patient`'s record, strongest basis first; empty: nothing."""
    return grants_and_acting_clinic(actor=actor, patient=patient, purpose=purpose)[0]


def grants_and_acting_clinic(
    *, actor: User, patient: User, purpose: str = Purpose.TREATMENT
) -> tuple[list[Grant], int | None]:
    """`grants`, and `acting_clinic_id(actor)` for the read's audit row: for a practitioner
    both from the same query of their clinics (decision 0023)."""
    if not actor.is_active or purpose not in Purpose.values:
        return [], acting_clinic_id(actor)
    if actor.role == Role.PATIENT:
        basis = acting_basis(actor=actor, patient=patient)
        return ([Grant(basis)] if basis else []), None
    if actor.role != Role.PRACTITIONER:
        return [], acting_clinic_id(actor)
    # The practitioner's clinics in `acting_clinic_id`'s order, with whether the patient is in
    # care at each and whether an emergency access of theirs is active: one query, the rules
    # those of `_in_care` and `_active_emergency_accesses` (as `active_emergency_access` asks).
    clinics = list(
        _acting_memberships(actor)
        .annotate(
            in_care=Exists(_in_care(patient=patient, clinic_id=OuterRef("clinic_id"))),
            emergency=Exists(_active_emergency_accesses(practitioner=actor, patient=patient)),
        )
        .values_list("clinic_id", "in_care", "emergency")
    )
    if not clinics:
        return [], None
    found = []
    in_care = frozenset(clinic_id for clinic_id, cared, _ in clinics if cared)
    if in_care:
        found.append(Grant(Basis.OWN_CLINIC, clinic_ids=in_care))
    clinic_ids = {clinic_id for clinic_id, _, _ in clinics}
    for consent in active_consents(patient=patient, grantee_clinic_ids=clinic_ids):
        found.append(
            Grant(
                Basis.CONSENT,
                clinic_ids=None
                if consent.source_clinic_id is None
                else frozenset({consent.source_clinic_id}),
                categories=frozenset(consent.categories),
            )
        )
    if clinics[0][2]:  # the same answer on every row
        found.append(Grant(Basis.EMERGENCY))
    return found, clinics[0][0]


def _in_care(*, patient: User, clinic_id):
    return CareRelationship.objects.filter(patient=patient, clinic_id=clinic_id)


def acting_basis(*, actor: User, patient: User) -> str | None:
    """On which basis a patient account acts for `patient` (books, cancels, reads, grants
    consents, exports): `self`, `holder` for a relative it manages, or None.

    Asked on every request, never cached: a takeover ends the holder's access at once.
    """
    if not actor.is_active or actor.role != Role.PATIENT or patient.role != Role.PATIENT:
        return None
    if actor.pk == patient.pk:
        return Basis.SELF
    if RelativeLink.objects.filter(
        holder=actor, relative=patient, ended_at__isnull=True, relative__is_active=True
    ).exists():
        return Basis.HOLDER
    return None


def acting_clinic_id(actor: User) -> int | None:
    """The clinic a practitioner or clinic admin acts for (their first by name), for audit rows
    and the patient's access log; None for everyone else."""
    if actor.role not in (Role.PRACTITIONER, Role.CLINIC_ADMIN):
        return None
    return _acting_memberships(actor).values_list("clinic_id", flat=True).first()


def _acting_memberships(actor: User):
    """The actor's memberships in their role, the one they act for first (by clinic name)."""
    return Membership.objects.filter(user=actor, role=actor.role).order_by(
        "clinic__name", "clinic_id"
    )


def active_consents(*, patient: User, grantee_clinic_ids) -> list[Consent]:
    today = timezone.localdate()
    return list(
        Consent.objects.filter(
            patient=patient,
            grantee_clinic_id__in=grantee_clinic_ids,
            revoked_at__isnull=True,
            valid_from__lte=today,
        ).filter(Q(valid_until__isnull=True) | Q(valid_until__gte=today))
    )


def active_emergency_access(*, practitioner: User, patient: User) -> EmergencyAccess | None:
    return (
        _active_emergency_accesses(practitioner=practitioner, patient=patient)
        .order_by("-expires_at")
        .first()
    )


def _active_emergency_accesses(*, practitioner: User, patient: User):
    return EmergencyAccess.objects.filter(
        practitioner=practitioner, patient=patient, expires_at__gt=timezone.now()
    )


def decide(
    *, actor: User, patient: User, category: str, source_clinic_id: int, purpose: str
) -> Decision:
    """May `actor` read `patient`'s entry of `category` written by `source_clinic_id`?"""
    for grant in grants(actor=actor, patient=patient, purpose=purpose):
        if grant.covers(clinic_id=source_clinic_id, category=category):
            return Decision(True, grant.basis, "")
    return Decision(False, None, "no_basis")
