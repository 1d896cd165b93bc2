"""The one place that decides who may see which part of a patient's medical record.

Everything that reads medical data asks here: `decide` for one entry, `grants` for a list (as
`Q` objects over plain field names, so `vault` filters in one query and `consent` never imports
`vault`). The caller audits every decision, allowed or denied.

PLACEHOLDER (vault issue): a patient sees their own record (`self`) and a practitioner the
entries their own clinics authored (`own_clinic`); nothing else. The [consent] issue adds care
relationships, consents across clinics and emergency access behind the same two functions.
"""

from dataclasses import dataclass

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, Role, User


class Basis(models.TextChoices):
    SELF = "self", _("The patient themself")
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
    if not actor.is_active or purpose not in Purpose.values:
        return []
    if actor.pk == patient.pk and actor.role == Role.PATIENT:
        return [Grant(Basis.SELF)]
    if actor.role == Role.PRACTITIONER:
        clinic_ids = frozenset(
            Membership.objects.filter(user=actor, role=Role.PRACTITIONER).values_list(
                "clinic_id", flat=True
            )
        )
        if clinic_ids:
            return [Grant(Basis.OWN_CLINIC, clinic_ids=clinic_ids)]
    return []


def decide(
    *, actor: User, patient: User, category: str, source_clinic_id: int, purpose: str
) -> Decision:
    """May `actor` read `patient`'s entry of `category` written by `source_clinic_id`?"""
    for grant in grants(actor=actor, patient=patient, purpose=purpose):
        if grant.covers(clinic_id=source_clinic_id, category=category):
            return Decision(True, grant.basis, "")
    return Decision(False, None, "no_basis")
