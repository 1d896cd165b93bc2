"""Consent's operations. Consents and emergency access arrive with the [consent] issue."""

from django.db import IntegrityError, transaction

from accounts.models import Clinic, User
from consent.models import CareRelationship


def care_relationship_record(*, patient: User, clinic: Clinic, source: str) -> CareRelationship:
    """Note that `patient` is in care at `clinic` (once; later calls change nothing)."""
    existing = CareRelationship.objects.filter(patient=patient, clinic=clinic).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return CareRelationship.objects.create(patient=patient, clinic=clinic, source=source)
    except IntegrityError:  # recorded concurrently by another request
        return CareRelationship.objects.get(patient=patient, clinic=clinic)
