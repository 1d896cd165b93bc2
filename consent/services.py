"""Consent's operations: care relationships and the patient's consents."""

import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic, User
from audit.models import AuditAction
from audit.signals import send_event
from consent.models import CareRelationship, Consent, RecordCategory
from consent.relatives import acting_for
from patterm.errors import Conflict, InvalidInput, NotFound


def care_relationship_record(*, patient: User, clinic: Clinic, source: str) -> None:
    """Note that `patient` is in care at `clinic` (once; later calls change nothing, the first
    source stays). One INSERT that does nothing when the relationship exists (ON CONFLICT DO
    NOTHING on the unique pair; INSERT OR IGNORE on SQLite), also against a concurrent one:
    no read first and no savepoint, inside the booking's or the record entry's transaction."""
    CareRelationship.objects.bulk_create(
        [CareRelationship(patient=patient, clinic=clinic, source=source)], ignore_conflicts=True
    )


# --- Consents -------------------------------------------------------------------------------

MESSAGE_UNKNOWN_CLINIC = _("There is no such clinic.")
MESSAGE_NO_CATEGORIES = _("Choose at least one category.")
MESSAGE_UNKNOWN_CATEGORY = _("Unknown category: %(category)s.")
MESSAGE_PAST_END = _("The end date lies in the past.")
MESSAGE_ALREADY_REVOKED = _("This consent was revoked already.")


@transaction.atomic
def consent_grant(
    *,
    patient: User,
    grantee_clinic_id: int,
    source_clinic_id: int | None,
    categories: list[str],
    valid_until: datetime.date | None,
    actor: User | None = None,
) -> Consent:
    """The patient lets a clinic see some categories of their record (audited). `actor`: the
    account holder granting it for a relative (default: the patient themself)."""
    actor, acting = acting_for(actor=actor, patient=patient)
    errors = []
    clinics = set(
        Clinic.objects.filter(pk__in=[grantee_clinic_id, source_clinic_id]).values_list(
            "pk", flat=True
        )
    )
    if grantee_clinic_id not in clinics:
        errors.append({"field": "grantee_clinic", "message": str(MESSAGE_UNKNOWN_CLINIC)})
    if source_clinic_id is not None and source_clinic_id not in clinics:
        errors.append({"field": "source_clinic", "message": str(MESSAGE_UNKNOWN_CLINIC)})
    if not categories:
        errors.append({"field": "categories", "message": str(MESSAGE_NO_CATEGORIES)})
    for category in categories:
        if category not in RecordCategory.values:
            message = MESSAGE_UNKNOWN_CATEGORY % {"category": category}
            errors.append({"field": "categories", "message": str(message)})
    today = timezone.localdate()
    if valid_until is not None and valid_until < today:
        errors.append({"field": "valid_until", "message": str(MESSAGE_PAST_END)})
    if errors:
        raise InvalidInput(errors)
    consent = Consent.objects.create(
        patient=patient,
        grantee_clinic_id=grantee_clinic_id,
        source_clinic_id=source_clinic_id,
        categories=sorted(set(categories)),
        valid_from=today,
        valid_until=valid_until,
    )
    send_event(
        action=AuditAction.CONSENT_GRANT,
        actor=actor,
        object_type="consent",
        object_id=consent.pk,
        subject_id=patient.pk,
        clinic_id=grantee_clinic_id,
        purpose=consent.purpose,
        details={
            "categories": consent.categories,
            "source_clinic": source_clinic_id,
            "valid_until": valid_until.isoformat() if valid_until else None,
            **acting,
        },
    )
    return consent


@transaction.atomic
def consent_revoke(*, patient: User, consent_id, actor: User | None = None) -> Consent:
    """Withdraw a consent: it stops access from the very next request (audited). `actor`: the
    account holder revoking it for a relative (default: the patient themself)."""
    actor, acting = acting_for(actor=actor, patient=patient)
    consent = Consent.objects.select_for_update().filter(pk=consent_id, patient=patient).first()
    if consent is None:
        raise NotFound()
    if consent.revoked_at is not None:
        raise Conflict(MESSAGE_ALREADY_REVOKED, "already_revoked")
    consent.revoked_at = timezone.now()
    consent.save(update_fields=["revoked_at"])
    send_event(
        action=AuditAction.CONSENT_REVOKE,
        actor=actor,
        object_type="consent",
        object_id=consent.pk,
        subject_id=patient.pk,
        clinic_id=consent.grantee_clinic_id,
        purpose=consent.purpose,
        details=acting or None,
    )
    return consent


def consents_of(*, patient: User):
    return Consent.objects.filter(patient=patient).select_related("grantee_clinic", "source_clinic")
