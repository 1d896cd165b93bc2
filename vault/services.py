"""The vault's operations: patient sign-up with the encrypted profile."""

import datetime

from django.db import transaction

from accounts.models import Role, User
from accounts.services import ClientInfo, IssuedToken, token_issue, user_create
from audit.models import AuditAction
from audit.signals import send_event
from vault.keys import data_key_create
from vault.models import PatientProfile


@transaction.atomic
def patient_register(
    *,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    client: ClientInfo,
) -> IssuedToken:
    """Create a patient account, their data key and encrypted profile, and a first API token.

    Names and the date of birth never reach the database in plaintext; the audit row names the
    patient only by pseudonym.
    """
    user = user_create(email=email, password=password, role=Role.PATIENT)
    data_key_create(patient_id=user.pk)
    PatientProfile.objects.create(
        patient=user, first_name=first_name, last_name=last_name, date_of_birth=date_of_birth
    )
    issued = token_issue(user=user, client=client)
    send_event(
        action=AuditAction.AUTH_REGISTER,
        actor=user,
        object_type="user",
        object_id=user.pk,
        subject_id=user.pk,
    )
    return issued


def patient_profile_get(*, patient: User) -> PatientProfile | None:
    return PatientProfile.objects.filter(patient=patient).first()
