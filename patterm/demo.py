"""Demo data for `manage.py seed_demo`: clinics in three cities and one account per role.

Idempotent: what exists is left as it is, so a second run changes nothing (no new rows, no new
audit events, no password reset). The README lists these accounts.
"""

import datetime
from dataclasses import dataclass

from django.db import transaction

from accounts.models import Clinic, Membership, Role, User
from accounts.services import ClientInfo, user_create
from vault.models import RecordCategory, RecordEntry
from vault.services import patient_register, record_entry_create

CLINICS = [
    {
        "slug": "praxis-prenzlauer-berg",
        "name": "Praxis am Prenzlauer Berg",
        "city": "Berlin",
        "address": "Kastanienallee 12, 10435 Berlin",
    },
    {
        "slug": "hausarztpraxis-schwabing",
        "name": "Hausarztpraxis Schwabing",
        "city": "München",
        "address": "Leopoldstraße 48, 80802 München",
    },
    {
        "slug": "kinderarztpraxis-eppendorf",
        "name": "Kinderarztpraxis Eppendorf",
        "city": "Hamburg",
        "address": "Eppendorfer Landstraße 31, 20249 Hamburg",
    },
]


@dataclass(frozen=True)
class DemoAccount:
    role: str
    email: str
    password: str
    first_name: str
    last_name: str
    clinic_slug: str | None = None


DEMO_PASSWORD_NOTE = "Demo passwords are public: never use them outside development."  # noqa: S105

ACCOUNTS = [
    DemoAccount(Role.PATIENT, "patient@demo.patterm.de", "Patient-Demo-2026", "Pat", "Demo"),
    DemoAccount(
        Role.PRACTITIONER,
        "aerztin@demo.patterm.de",
        "Aerztin-Demo-2026",
        "Anna",
        "Berger",
        "praxis-prenzlauer-berg",
    ),
    DemoAccount(
        Role.CLINIC_ADMIN,
        "praxis-admin@demo.patterm.de",
        "Praxisadmin-Demo-2026",
        "Jonas",
        "Keller",
        "praxis-prenzlauer-berg",
    ),
    DemoAccount(
        Role.AUDITOR,
        "auditor@demo.patterm.de",
        "Auditor-Demo-2026",
        "Miriam",
        "Vogt",
        "praxis-prenzlauer-berg",
    ),
]

RECORD_ENTRIES = [
    (RecordCategory.DIAGNOSIS, "Essentielle Hypertonie (I10.90)", "Erstdiagnose, RR 152/95."),
    (RecordCategory.MEDICATION, "Ramipril 5 mg", "1-0-0, Kontrolle in vier Wochen."),
    (RecordCategory.ALLERGY, "Penicillin", "Exanthem 2019 nach Amoxicillin."),
]

SUPERUSER = DemoAccount(
    Role.CLINIC_ADMIN, "ops@demo.patterm.de", "Betrieb-Demo-2026", "Olaf", "Ops"
)


@transaction.atomic
def seed_demo() -> dict[str, int]:
    """Create what is missing; return how many of each kind were created."""
    created = {"clinics": 0, "accounts": 0, "memberships": 0, "record entries": 0}
    clinics = {}
    for fields in CLINICS:
        clinics[fields["slug"]], was_created = Clinic.objects.get_or_create(
            slug=fields["slug"], defaults=fields
        )
        created["clinics"] += was_created
    for account in [*ACCOUNTS, SUPERUSER]:
        user = User.objects.filter(email=account.email).first()
        if user is None:
            user = _create_account(account)
            created["accounts"] += 1
        if account.clinic_slug:
            _, was_created = Membership.objects.get_or_create(
                user=user, clinic=clinics[account.clinic_slug], defaults={"role": account.role}
            )
            created["memberships"] += was_created
    created["record entries"] = _seed_record(clinics["praxis-prenzlauer-berg"])
    return created


def _seed_record(clinic: Clinic) -> int:
    patient = User.objects.get(email=ACCOUNTS[0].email)
    practitioner = User.objects.get(email=ACCOUNTS[1].email)
    if RecordEntry.objects.filter(patient=patient).exists():
        return 0
    for category, title, body in RECORD_ENTRIES:
        record_entry_create(
            actor=practitioner,
            patient=patient,
            clinic=clinic,
            category=category,
            title=title,
            body=body,
        )
    return len(RECORD_ENTRIES)


def _create_account(account: DemoAccount) -> User:
    if account.role == Role.PATIENT:
        return patient_register(
            email=account.email,
            password=account.password,
            first_name=account.first_name,
            last_name=account.last_name,
            date_of_birth=datetime.date(1990, 1, 1),
            client=ClientInfo(user_agent="seed_demo"),
        ).user
    extra = {"is_staff": True, "is_superuser": True} if account is SUPERUSER else {}
    return user_create(
        email=account.email,
        password=account.password,
        role=account.role,
        first_name=account.first_name,
        last_name=account.last_name,
        **extra,
    )
