"""consent.policy.decide: each basis, source clinics, categories, and time."""

import datetime

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import ClinicFactory, StaffFactory
from consent.models import CareSource
from consent.policy import Decision, decide, grants
from consent.services import care_relationship_record, consent_grant, consent_revoke
from consent.tests.conftest import JUSTIFICATION
from vault.services import emergency_access_declare

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(make_patient):
    return make_patient().user


@pytest.fixture
def clinics():
    return ClinicFactory(), ClinicFactory(), ClinicFactory()


def practitioner_at(clinic):
    return StaffFactory(clinic=clinic, role=Role.PRACTITIONER)


def ask(actor, patient, category="diagnosis", source=None, purpose="treatment") -> Decision:
    return decide(
        actor=actor,
        patient=patient,
        category=category,
        source_clinic_id=source.pk,
        purpose=purpose,
    )


def grant(patient, grantee, categories=("diagnosis",), source=None, valid_until=None):
    return consent_grant(
        patient=patient,
        grantee_clinic_id=grantee.pk,
        source_clinic_id=source.pk if source else None,
        categories=list(categories),
        valid_until=valid_until,
    )


def test_self(patient, clinics):
    assert ask(patient, patient, source=clinics[0]) == Decision(True, "self", "")


def test_another_patient_has_no_basis(patient, make_patient, clinics):
    other = make_patient().user
    assert ask(other, patient, source=clinics[0]) == Decision(False, None, "no_basis")


def test_own_clinic_needs_a_care_relationship(patient, clinics):
    home, elsewhere, _ = clinics
    doctor = practitioner_at(home)
    assert not ask(doctor, patient, source=home).allowed  # not in care yet
    care_relationship_record(patient=patient, clinic=home, source=CareSource.BOOKING)
    assert ask(doctor, patient, source=home) == Decision(True, "own_clinic", "")
    for category in ("allergy", "document", "note"):
        assert ask(doctor, patient, category=category, source=home).basis == "own_clinic"
    assert not ask(doctor, patient, source=elsewhere).allowed  # another clinic's entry


def test_consent_covers_its_categories_only(patient, clinics):
    home, reader_clinic, _ = clinics
    reader = practitioner_at(reader_clinic)
    grant(patient, reader_clinic, categories=("diagnosis", "medication"))
    assert ask(reader, patient, "diagnosis", home) == Decision(True, "consent", "")
    assert ask(reader, patient, "medication", home).basis == "consent"
    assert not ask(reader, patient, "allergy", home).allowed
    assert not ask(reader, patient, "lab_result", home).allowed


def test_consent_without_source_covers_every_clinic(patient, clinics):
    first, reader_clinic, second = clinics
    reader = practitioner_at(reader_clinic)
    grant(patient, reader_clinic)
    assert ask(reader, patient, source=first).allowed
    assert ask(reader, patient, source=second).allowed


def test_consent_limited_to_a_source_clinic_covers_only_its_entries(patient, clinics):
    source, reader_clinic, other = clinics
    reader = practitioner_at(reader_clinic)
    grant(patient, reader_clinic, source=source)
    assert ask(reader, patient, source=source) == Decision(True, "consent", "")
    assert not ask(reader, patient, source=other).allowed
    assert not ask(reader, patient, source=reader_clinic).allowed


def test_consent_is_for_the_grantee_clinic_only(patient, clinics):
    home, grantee, bystander = clinics
    grant(patient, grantee)
    assert not ask(practitioner_at(bystander), patient, source=home).allowed
    # Clinic admins of the grantee clinic never see record content.
    admin = StaffFactory(clinic=grantee, role=Role.CLINIC_ADMIN)
    assert not ask(admin, patient, source=home).allowed


def test_a_revoked_consent_stops_access_at_once(patient, clinics):
    home, reader_clinic, _ = clinics
    reader = practitioner_at(reader_clinic)
    consent = grant(patient, reader_clinic)
    assert ask(reader, patient, source=home).allowed
    consent_revoke(patient=patient, consent_id=consent.pk)
    assert ask(reader, patient, source=home) == Decision(False, None, "no_basis")


def test_an_expired_consent_stops_access(patient, clinics):
    home, reader_clinic, _ = clinics
    reader = practitioner_at(reader_clinic)
    until = timezone.localdate() + datetime.timedelta(days=3)
    consent = grant(patient, reader_clinic, valid_until=until)
    assert ask(reader, patient, source=home).allowed
    with time_machine.travel(timezone.now() + datetime.timedelta(days=3)):
        assert ask(reader, patient, source=home).allowed  # the last day still counts
    with time_machine.travel(timezone.now() + datetime.timedelta(days=4, hours=1)):
        assert ask(reader, patient, source=home) == Decision(False, None, "no_basis")
        consent.refresh_from_db()
        assert consent.status == "expired"


def test_emergency_covers_everything_until_it_ends(patient, clinics):
    home, reader_clinic, _ = clinics
    reader = practitioner_at(reader_clinic)
    emergency_access_declare(actor=reader, patient_id=patient.pk, justification=JUSTIFICATION)
    for category in ("diagnosis", "allergy", "document"):
        assert ask(reader, patient, category, home) == Decision(True, "emergency", "")
    # Only the declaring practitioner, not their colleagues.
    assert not ask(practitioner_at(reader_clinic), patient, source=home).allowed
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=4, seconds=1)):
        assert ask(reader, patient, source=home) == Decision(False, None, "no_basis")


def test_the_strongest_basis_wins(patient, clinics):
    home, _, _ = clinics
    doctor = practitioner_at(home)
    care_relationship_record(patient=patient, clinic=home, source=CareSource.RECORD_ENTRY)
    grant(patient, home)
    emergency_access_declare(actor=doctor, patient_id=patient.pk, justification=JUSTIFICATION)
    assert ask(doctor, patient, source=home).basis == "own_clinic"
    assert [g.basis for g in grants(actor=doctor, patient=patient)] == [
        "own_clinic",
        "consent",
        "emergency",
    ]


def test_no_basis_for_admins_auditors_other_purposes_or_inactive_readers(patient, clinics):
    home, _, _ = clinics
    care_relationship_record(patient=patient, clinic=home, source=CareSource.BOOKING)
    grant(patient, home)
    admin = StaffFactory(clinic=home, role=Role.CLINIC_ADMIN)
    auditor = StaffFactory(clinic=home, role=Role.AUDITOR)
    for reader in (admin, auditor):
        assert not ask(reader, patient, source=home).allowed
    doctor = practitioner_at(home)
    assert not ask(doctor, patient, source=home, purpose="research").allowed
    assert not ask(patient, patient, source=home, purpose="marketing").allowed
    doctor.is_active = False
    assert not ask(doctor, patient, source=home).allowed
