"""A patient's insurance on their profile (issue 16): type, insurer and the
Krankenversichertennummer, encrypted with the patient's data key like the rest of the profile.

One place for the rules, used by the patient's own insurance page and API (booking) and by
adding a relative (vault.relatives)."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from audit.models import AuditAction
from audit.signals import send_event
from patterm.errors import InvalidInput, NotFound
from vault.models import InsuranceType, PatientProfile, validate_kvnr

MESSAGE_INSURANCE_UNKNOWN = _("Choose gesetzlich, privat or selbstzahler.")
INSURANCE_FIELDS = ("insurance_type", "insurer_name", "insurance_number")


def insurance_values_check(
    *, insurance_type: str | None, insurer_name: str | None, insurance_number: str | None
) -> dict:
    """The values to store (empty ones as None), or InvalidInput naming each bad field: a
    type that is not an InsuranceType, a number without the right check digit."""
    errors = []
    if insurance_type and insurance_type not in InsuranceType.values:
        errors.append({"field": "insurance_type", "message": str(MESSAGE_INSURANCE_UNKNOWN)})
    if insurance_number:
        try:
            validate_kvnr(insurance_number)
        except ValidationError as error:
            errors += [{"field": "insurance_number", "message": str(m)} for m in error.messages]
    if errors:
        raise InvalidInput(errors)
    return {
        "insurance_type": insurance_type or None,
        "insurer_name": insurer_name or None,
        "insurance_number": insurance_number or None,
    }


@transaction.atomic
def patient_insurance_update(
    *,
    patient: User,
    insurance_type: str | None,
    insurer_name: str | None,
    insurance_number: str | None,
    actor: User | None = None,
) -> PatientProfile:
    """Store a patient's insurance on their profile. `patient` is whose profile it is (the
    account holder, or a relative they act for: `actor`). Audited (`insurance.change`) with
    the names of the fields that changed, never their values."""
    values = insurance_values_check(
        insurance_type=insurance_type, insurer_name=insurer_name, insurance_number=insurance_number
    )
    profile = PatientProfile.objects.select_for_update().filter(patient=patient).first()
    if profile is None:
        raise NotFound()
    changed = [name for name, value in values.items() if getattr(profile, name) != value]
    for name, value in values.items():
        setattr(profile, name, value)
    profile.save(update_fields=[*INSURANCE_FIELDS, "updated_at"])
    actor = actor or patient
    send_event(
        action=AuditAction.INSURANCE_CHANGE,
        actor=actor,
        object_type="patient_profile",
        object_id=profile.pk,
        subject_id=patient.pk,
        details={"fields": changed, **({"bases": ["holder"]} if actor != patient else {})},
    )
    return profile
