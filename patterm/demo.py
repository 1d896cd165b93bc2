"""Demo data for `manage.py seed_demo`: clinics in three cities and one account per role.

Idempotent: what exists is left as it is, so a second run changes nothing (no new rows, no new
audit events, no password reset). The README lists these accounts.
"""

import datetime
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from accounts.models import Clinic, Membership, Role, User
from accounts.services import ClientInfo, user_create
from booking.models import OpeningHours, PractitionerSpecialty, Specialty, VisitMotive
from booking.services import slots_generate
from consent.models import Relationship as RelativeRelationship
from consent.models import RelativeLink
from vault.models import RecordCategory, RecordEntry
from vault.relatives import relative_add
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


SPECIALTIES = [
    ("allgemeinmedizin", "Allgemeinmedizin", "General practice"),
    ("kinderheilkunde", "Kinder- und Jugendmedizin", "Paediatrics"),
    ("kardiologie", "Kardiologie", "Cardiology"),
    ("dermatologie", "Dermatologie", "Dermatology"),
    ("orthopaedie", "Orthopädie", "Orthopaedics"),
]


@dataclass(frozen=True)
class DemoAccount:
    role: str
    email: str
    password: str
    first_name: str
    last_name: str
    clinic_slug: str | None = None
    # Practitioners: (specialty, weekdays, from hour, until hour)
    hours: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)


DEMO_PASSWORD_NOTE = "Demo passwords are public: never use them outside development."  # noqa: S105

ACCOUNTS = [
    DemoAccount(Role.PATIENT, "patient@demo.patterm.de", "Sommer-Wiese-2026", "Pat", "Demo"),
    DemoAccount(
        Role.PRACTITIONER,
        "aerztin@demo.patterm.de",
        "Herz-Sprechstunde-2026",
        "Anna",
        "Berger",
        "praxis-prenzlauer-berg",
        hours=[("allgemeinmedizin", (0, 1, 3), 8, 12), ("kardiologie", (2,), 14, 17)],
    ),
    DemoAccount(
        Role.CLINIC_ADMIN,
        "praxis-admin@demo.patterm.de",
        "Dienstplan-Montag-2026",
        "Jonas",
        "Keller",
        "praxis-prenzlauer-berg",
    ),
    DemoAccount(
        Role.AUDITOR,
        "auditor@demo.patterm.de",
        "Protokoll-Pruefung-2026",
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

# More practitioners, so that every city has slots. They sign in like the others.
PRACTITIONERS = [
    DemoAccount(
        Role.PRACTITIONER,
        "dermatologe@demo.patterm.de",
        "Haut-Sprechstunde-2026",
        "Deniz",
        "Aydın",  # noqa: RUF001  (a Turkish name, spelled right)
        "praxis-prenzlauer-berg",
        hours=[("dermatologie", (1, 4), 9, 13)],
    ),
    DemoAccount(
        Role.PRACTITIONER,
        "hausarzt@demo.patterm.de",
        "Schwabing-Sprechstunde-2026",
        "Lukas",
        "Huber",
        "hausarztpraxis-schwabing",
        hours=[("allgemeinmedizin", (0, 1, 2, 3, 4), 8, 11), ("orthopaedie", (3,), 14, 17)],
    ),
    DemoAccount(
        Role.PRACTITIONER,
        "kinderaerztin@demo.patterm.de",
        "Eppendorf-Sprechstunde-2026",
        "Sophie",
        "Hansen",
        "kinderarztpraxis-eppendorf",
        hours=[("kinderheilkunde", (0, 2, 4), 9, 12)],
    ),
]

SLOT_HORIZON_DAYS = 28


@dataclass(frozen=True)
class DemoMotive:
    specialty: str
    name_de: str
    name_en: str
    minutes: int
    patients: str = "both"  # booking.models.MotivePatients
    insurance: tuple[str, ...] = ("gesetzlich", "privat", "selbstzahler")
    online: bool = True
    note_de: str = ""
    note_en: str = ""


# Visit motives per practitioner (by e-mail): different durations and rules, so that search and
# booking show what a real practice configures (README, "What a practice sets up first").
MOTIVES = {
    "aerztin@demo.patterm.de": [
        DemoMotive("allgemeinmedizin", "Erstuntersuchung", "First examination", 40, patients="new"),
        DemoMotive("allgemeinmedizin", "Kontrolle", "Follow-up", 10, patients="known"),
        DemoMotive(
            "kardiologie",
            "Kardiologische Abklärung",
            "Cardiac assessment",
            60,
            note_de="Bitte Überweisung mitbringen.",
            note_en="Please bring your referral.",
        ),
        DemoMotive("kardiologie", "EKG-Kontrolle", "ECG check", 20, patients="known"),
    ],
    "dermatologe@demo.patterm.de": [
        DemoMotive(
            "dermatologie",
            "Hautkrebs-Screening",
            "Skin cancer screening",
            20,
            insurance=("gesetzlich", "privat"),
        ),
        DemoMotive(
            "dermatologie",
            "Ästhetische Beratung",
            "Aesthetic consultation",
            40,
            insurance=("selbstzahler",),
        ),
        DemoMotive(
            "dermatologie",
            "Hautoperation (Vorgespräch)",
            "Skin surgery (briefing)",
            20,
            online=False,
        ),
    ],
    "hausarzt@demo.patterm.de": [
        DemoMotive("allgemeinmedizin", "Akutsprechstunde", "Acute consultation", 20),
        DemoMotive(
            "allgemeinmedizin",
            "Check-up 35",
            "Health check-up (35+)",
            40,
            insurance=("gesetzlich",),
            note_de="Bitte nüchtern kommen.",
            note_en="Please come fasting.",
        ),
        DemoMotive("orthopaedie", "Rückenschmerzen", "Back pain", 20),
    ],
    "kinderaerztin@demo.patterm.de": [
        DemoMotive(
            "kinderheilkunde",
            "U-Untersuchung",
            "Child check-up (U examination)",
            40,
            insurance=("gesetzlich", "privat"),
            note_de="Bitte das gelbe Kinder-Untersuchungsheft und den Impfpass mitbringen.",
            note_en="Please bring the yellow check-up booklet and the vaccination card.",
        ),
        DemoMotive("kinderheilkunde", "Impfung", "Vaccination", 10, insurance=("gesetzlich",)),
        DemoMotive(
            "kinderheilkunde", "Akutsprechstunde", "Acute consultation", 20, patients="known"
        ),
    ],
}

SUPERUSER = DemoAccount(
    Role.CLINIC_ADMIN, "ops@demo.patterm.de", "Betrieb-Demo-2026", "Olaf", "Ops"
)


@transaction.atomic
def seed_demo() -> dict[str, int]:
    """Create what is missing; return how many of each kind were created."""
    created = {
        "clinics": 0,
        "accounts": 0,
        "memberships": 0,
        "motives": 0,
        "record entries": 0,
        "relatives": 0,
        "slots": 0,
    }
    clinics = {}
    for fields in CLINICS:
        clinics[fields["slug"]], was_created = Clinic.objects.get_or_create(
            slug=fields["slug"], defaults=fields
        )
        created["clinics"] += was_created
    specialties = {}
    for slug, name_de, name_en in SPECIALTIES:
        specialties[slug], _ = Specialty.objects.get_or_create(
            slug=slug, defaults={"name_de": name_de, "name_en": name_en}
        )
    for account in [*ACCOUNTS, *PRACTITIONERS, SUPERUSER]:
        user = User.objects.filter(email=account.email).first()
        if user is None:
            user = _create_account(account)
            created["accounts"] += 1
        if account.clinic_slug:
            membership, was_created = Membership.objects.get_or_create(
                user=user, clinic=clinics[account.clinic_slug], defaults={"role": account.role}
            )
            created["memberships"] += was_created
            _seed_hours(membership, account, specialties)
            created["motives"] += _seed_motives(membership, account, specialties)
    created["record entries"] = _seed_record(clinics["praxis-prenzlauer-berg"])
    created["relatives"] = _seed_child()
    created["slots"] = slots_generate(days=SLOT_HORIZON_DAYS, start=_tomorrow())
    return created


def _tomorrow() -> datetime.date:
    """Slots begin tomorrow, so that a fresh database's first slot, slot-001, is bookable."""
    return timezone.localdate() + datetime.timedelta(days=1)


def _seed_hours(membership: Membership, account: DemoAccount, specialties: dict) -> None:
    for slug, weekdays, from_hour, until_hour in account.hours:
        PractitionerSpecialty.objects.get_or_create(
            membership=membership, specialty=specialties[slug]
        )
        for weekday in weekdays:
            OpeningHours.objects.get_or_create(
                membership=membership,
                weekday=weekday,
                start_time=datetime.time(from_hour),
                defaults={
                    "end_time": datetime.time(until_hour),
                    "slot_minutes": 20,
                    "specialty": specialties[slug],
                },
            )


def _seed_motives(membership: Membership, account: DemoAccount, specialties: dict) -> int:
    created = 0
    for motive in MOTIVES.get(account.email, []):
        _, was_created = VisitMotive.objects.get_or_create(
            membership=membership,
            name_de=motive.name_de,
            defaults={
                "specialty": specialties[motive.specialty],
                "name_en": motive.name_en,
                "duration_minutes": motive.minutes,
                "patients": motive.patients,
                "bookable_online": motive.online,
                "accepts_statutory": "gesetzlich" in motive.insurance,
                "accepts_private": "privat" in motive.insurance,
                "accepts_self_pay": "selbstzahler" in motive.insurance,
                "note_de": motive.note_de,
                "note_en": motive.note_en,
            },
        )
        created += was_created
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


# The demo patient's child (decision 0014): a patient without login, managed by the demo
# patient, for the Hamburg paediatric practice. Born so that the child is eight this year.
DEMO_CHILD = {"first_name": "Mia", "last_name": "Demo", "relationship": RelativeRelationship.CHILD}


def _seed_child() -> int:
    holder = User.objects.get(email=ACCOUNTS[0].email)
    if RelativeLink.objects.filter(holder=holder).exists():
        return 0
    born = timezone.localdate().replace(month=5, day=14)
    relative_add(holder=holder, date_of_birth=born.replace(year=born.year - 8), **DEMO_CHILD)
    return 1


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
