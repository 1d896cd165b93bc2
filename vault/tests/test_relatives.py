"""Relatives through the services (decision 0014): a holder adds a child, who is a patient of
their own without a login; the holder books, cancels, reads, grants consents for them, each on
the `holder` basis and audited with the child as subject; nobody else reaches the child; from
PATTERM_RELATIVE_OWN_ACCOUNT_AGE the child takes over and the holder's access ends."""

import datetime
import re

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from accounts.models import User
from accounts.services import ClientInfo, login
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from audit.selectors import events_about
from audit.services import subject_pseudonym
from audit.tests.builders import slot_make, staff_with_token
from booking.models import Appointment, AppointmentStatus
from booking.services import appointment_book, appointment_cancel, schedule_read
from consent import policy
from consent.models import Consent, RelativeLink
from consent.services import consent_grant, consent_revoke
from patterm.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from vault import keys, relatives
from vault.models import PatientKey, PatientProfile
from vault.tests.factories import record_entry_write, stored_value

pytestmark = pytest.mark.django_db

PASSWORD = "Eigenes-Konto-2026"


def years_ago(years: int, days: int = 0) -> datetime.date:
    today = timezone.localdate()
    return today.replace(year=today.year - years) - datetime.timedelta(days=days)


@pytest.fixture
def holder(make_patient):
    return make_patient(email="mutter@example.com").user


@pytest.fixture
def child(holder):
    return relatives.relative_add(
        holder=holder, first_name="Lena", last_name="Mustermann", date_of_birth=years_ago(6)
    )


@pytest.fixture
def practice(db):
    clinic = ClinicFactory(name="Kinderarztpraxis Eppendorf")
    doctor, _ = staff_with_token(role="practitioner", clinic=clinic)
    return clinic, doctor


def test_a_relative_is_a_patient_of_their_own_without_a_login(holder, child):
    relative = child.user
    assert relative.role == "patient" and relative.is_active
    assert not relative.has_usable_password()
    assert relative.pk != holder.pk
    assert PatientKey.objects.filter(patient=relative, destroyed_at=None).count() == 1
    profile = PatientProfile.objects.get(patient=relative)
    assert (profile.first_name, profile.date_of_birth) == ("Lena", years_ago(6))
    assert "Lena" not in str(stored_value(PatientProfile, relative.pk, "first_name"))
    assert RelativeLink.objects.get(relative=relative).holder == holder
    # Nobody signs in as the relative, whatever they try.
    with pytest.raises(NotAuthenticated):
        login(email=relative.email, password="", client=ClientInfo())
    registered = AuditEvent.objects.get(action=AuditAction.AUTH_REGISTER, object_id=relative.pk)
    assert registered.actor_id == holder.pk
    assert registered.subject_ref == subject_pseudonym(relative.pk)
    assert registered.details == {"bases": ["holder"], "relationship": "child"}
    assert [r.id for r in relatives.relatives_of(holder=holder)] == [relative.pk]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date_of_birth": timezone.localdate() + datetime.timedelta(days=1)}, "date_of_birth"),
        ({"date_of_birth": datetime.date(1899, 12, 31)}, "date_of_birth"),
        ({"first_name": "  "}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"first_name": "Le\x00na"}, "first_name"),
        ({"relationship": "cousin"}, "relationship"),
    ],
)
def test_bad_input_is_a_field_error_and_stores_nothing(holder, changes, field):
    fields = {"first_name": "Lena", "last_name": "M", "date_of_birth": years_ago(3)}
    users, events = User.objects.count(), AuditEvent.objects.count()
    with pytest.raises(InvalidInput) as error:
        relatives.relative_add(holder=holder, **{**fields, **changes})
    assert [item["field"] for item in error.value.errors] == [field]
    assert (User.objects.count(), AuditEvent.objects.count()) == (users, events)
    assert not RelativeLink.objects.exists()


def test_a_relative_without_login_cannot_hold_relatives_and_staff_cannot_either(
    holder, child, practice
):
    with pytest.raises(relatives.Forbidden):
        relatives.relative_add(
            holder=child.user, first_name="A", last_name="B", date_of_birth=years_ago(1)
        )
    with pytest.raises(relatives.Forbidden):
        relatives.relative_add(
            holder=practice[1], first_name="A", last_name="B", date_of_birth=years_ago(1)
        )


def test_the_policy_gives_the_holder_basis_to_the_holder_only(holder, child, make_patient):
    stranger = make_patient(email="fremd@example.com").user
    assert policy.grants(actor=holder, patient=child.user) == [policy.Grant("holder")]
    assert policy.acting_basis(actor=holder, patient=child.user) == "holder"
    assert policy.grants(actor=stranger, patient=child.user) == []
    assert policy.grants(actor=child.user, patient=holder) == []  # not the other way round
    with pytest.raises(NotFound):
        relatives.relative_get(holder=stranger, relative_id=child.id)
    for unknown in (999_999, "abc", None):
        with pytest.raises(NotFound):
            relatives.relative_get(holder=holder, relative_id=unknown)


def test_the_holder_books_and_cancels_for_the_child_audited_as_acting_for_them(
    holder, child, practice, sent_mails
):
    clinic, doctor = practice
    slot = slot_make(practitioner=doctor, clinic=clinic)
    appointment = appointment_book(patient=child.user, actor=holder, slot_id=slot.public_id)

    assert appointment.patient == child.user and appointment.booked_by == holder
    assert appointment.patient_first_name == "Lena"  # the child's snapshot, not the holder's
    booked = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_BOOK)
    assert booked.actor_id == holder.pk
    assert booked.subject_ref == subject_pseudonym(child.id)
    assert booked.details["bases"] == ["holder"]
    assert sent_mails()[-1].to == ["mutter@example.com"]  # the child has no address

    appointment_cancel(actor=holder, appointment_id=appointment.pk)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    cancelled = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_CANCEL)
    assert (cancelled.actor_id, cancelled.details) == (
        holder.pk,
        {"by": "holder", "bases": ["holder"]},
    )
    # Both show in the child's access log, with the basis.
    logged = list(events_about(patient_id=child.id).values_list("action", "details"))
    assert ("appointment.book", booked.details) in logged


def test_nobody_else_books_or_cancels_for_someone_elses_relative(
    holder, child, practice, make_patient
):
    clinic, doctor = practice
    stranger = make_patient(email="fremd@example.com").user
    slot = slot_make(practitioner=doctor, clinic=clinic)
    with pytest.raises(NotFound):
        appointment_book(patient=child.user, actor=stranger, slot_id=slot.public_id)
    assert not Appointment.objects.exists()
    slot.refresh_from_db()
    assert not slot.is_booked
    appointment = appointment_book(patient=child.user, actor=holder, slot_id=slot.public_id)
    with pytest.raises(NotFound):
        appointment_cancel(actor=stranger, appointment_id=appointment.pk)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


def test_staff_see_that_the_holder_booked_and_nothing_of_the_holder(holder, child, practice):
    clinic, doctor = practice
    slot = slot_make(practitioner=doctor, clinic=clinic)
    appointment_book(patient=child.user, actor=holder, slot_id=slot.public_id)
    (shown,) = schedule_read(
        actor=doctor,
        date_from=timezone.now(),
        date_to=timezone.now() + datetime.timedelta(days=7),
    )
    assert shown.patient_id == child.id and shown.booked_by_id == holder.pk
    assert shown.patient_first_name == "Lena"


def test_the_holder_reads_the_record_through_the_policy_audited(holder, child, practice):
    clinic, doctor = practice
    record_entry_write(author=doctor, patient=child.user, clinic=clinic, title="U9 unauffällig")
    _relative, read = relatives.relative_record_read(holder=holder, relative_id=child.id)
    assert [(e.title, e.basis) for e in read.entries] == [("U9 unauffällig", "holder")]
    event = AuditEvent.objects.filter(action=AuditAction.RECORD_READ).get()
    assert event.actor_id == holder.pk and event.subject_ref == subject_pseudonym(child.id)
    assert event.details["bases"] == ["holder"] and event.outcome == "success"


def test_the_holder_grants_and_revokes_consents_for_the_child(holder, child, make_patient):
    other = ClinicFactory()
    consent = consent_grant(
        patient=child.user,
        actor=holder,
        grantee_clinic_id=other.pk,
        source_clinic_id=None,
        categories=["allergy"],
        valid_until=None,
    )
    assert consent.patient == child.user
    granted = AuditEvent.objects.get(action=AuditAction.CONSENT_GRANT)
    assert granted.actor_id == holder.pk and granted.details["bases"] == ["holder"]
    stranger = make_patient(email="fremd@example.com").user
    with pytest.raises(NotFound):
        consent_revoke(patient=child.user, actor=stranger, consent_id=consent.pk)
    consent_revoke(patient=child.user, actor=holder, consent_id=consent.pk)
    assert Consent.objects.get(pk=consent.pk).revoked_at is not None


# --- Taking over ----------------------------------------------------------------------------


def _link_from(message) -> str:
    return re.search(r"/relatives/takeover/(\S+)/", message.body).group(1)


def test_a_child_too_young_cannot_be_invited(holder, child):
    with pytest.raises(Conflict) as error:
        relatives.relative_invite(holder=holder, relative_id=child.id, email="lena@example.com")
    assert error.value.code == "relative_too_young"
    assert RelativeLink.objects.get(relative=child.user).invited_at is None
    assert not mail.outbox


@override_settings(PATTERM_RELATIVE_OWN_ACCOUNT_AGE=15)
def test_from_the_age_set_the_child_takes_over_and_the_holder_loses_access(
    holder, practice, django_capture_on_commit_callbacks
):
    teen = relatives.relative_add(
        holder=holder, first_name="Tom", last_name="M", date_of_birth=years_ago(15)
    )
    younger = relatives.relative_add(
        holder=holder, first_name="Mia", last_name="M", date_of_birth=years_ago(15, days=-1)
    )
    assert [r.may_take_over for r in relatives.relatives_of(holder=holder)] == [True, False]

    with pytest.raises(InvalidInput):
        relatives.relative_invite(holder=holder, relative_id=teen.id, email="mutter@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        relatives.relative_invite(holder=holder, relative_id=teen.id, email="Tom@Example.com")
    (message,) = mail.outbox
    assert message.to == ["tom@example.com"]
    token = _link_from(message)
    assert relatives.invitation_open(token=token).relative == teen.user

    account = relatives.relative_takeover(token=token, password=PASSWORD)
    assert account.email == "tom@example.com" and account.check_password(PASSWORD)
    assert login(email="tom@example.com", password=PASSWORD, client=ClientInfo()).user == teen.user
    # The holder's access ended: no basis, no relative, no booking for them.
    assert policy.grants(actor=holder, patient=teen.user) == []
    with pytest.raises(NotFound):
        relatives.relative_get(holder=holder, relative_id=teen.id)
    clinic, doctor = practice
    with pytest.raises(NotFound):
        appointment_book(
            patient=teen.user,
            actor=holder,
            slot_id=slot_make(practitioner=doctor, clinic=clinic).public_id,
        )
    assert [r.id for r in relatives.relatives_of(holder=holder)] == [younger.id]
    taken = AuditEvent.objects.get(action=relatives.RELATIVE_TAKEOVER)
    assert taken.actor_id == teen.id and taken.details == {"former_holder": holder.pk}
    # The link works once.
    with pytest.raises(NotFound):
        relatives.relative_takeover(token=token, password=PASSWORD)


@override_settings(PATTERM_RELATIVE_OWN_ACCOUNT_AGE=15, PATTERM_RELATIVE_INVITATION_DAYS=7)
def test_an_invitation_expires_and_a_newer_one_replaces_it(
    holder, django_capture_on_commit_callbacks
):
    teen = relatives.relative_add(
        holder=holder, first_name="Tom", last_name="M", date_of_birth=years_ago(16)
    )
    with django_capture_on_commit_callbacks(execute=True):
        relatives.relative_invite(holder=holder, relative_id=teen.id, email="tom@example.com")
    first = _link_from(mail.outbox[-1])
    with time_machine.travel(timezone.now() + datetime.timedelta(days=8)):
        with pytest.raises(Conflict) as error:
            relatives.relative_takeover(token=first, password=PASSWORD)
        assert error.value.code == "invitation_expired"
    with django_capture_on_commit_callbacks(execute=True):
        relatives.relative_invite(holder=holder, relative_id=teen.id, email="tom@example.com")
    with pytest.raises(NotFound):
        relatives.invitation_open(token=first)
    with pytest.raises(NotFound):
        relatives.invitation_open(token=first[:-2] + "xx")
    # A weak password is a field error and changes nothing.
    with pytest.raises(InvalidInput) as weak:
        relatives.relative_takeover(token=_link_from(mail.outbox[-1]), password="tom")
    assert weak.value.errors[0]["field"] == "password"
    assert RelativeLink.objects.get(relative=teen.user).ended_at is None
    assert not User.objects.get(pk=teen.id).has_usable_password()


# --- Telling the holder, demo data, queries -------------------------------------------------


@override_settings(PATTERM_RELATIVE_OWN_ACCOUNT_AGE=15)
def test_the_holder_is_told_once_when_a_relative_reaches_the_age(
    holder, django_capture_on_commit_callbacks
):
    relatives.relative_add(
        holder=holder, first_name="Tom", last_name="M", date_of_birth=years_ago(14)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert relatives.takeover_notices_send().told == 0
    assert not mail.outbox
    with time_machine.travel(timezone.now() + datetime.timedelta(days=366)):
        with django_capture_on_commit_callbacks(execute=True):
            assert relatives.takeover_notices_send().told == 1
        with django_capture_on_commit_callbacks(execute=True):
            assert relatives.takeover_notices_send().told == 0  # once
    (message,) = mail.outbox
    assert message.to == ["mutter@example.com"]
    assert "/relatives/" in message.body and "Tom" not in message.body


def test_seed_demo_gives_the_demo_patient_one_child_once():
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    holder = User.objects.get(email="patient@demo.patterm.de")
    (child,) = relatives.relatives_of(holder=holder)
    assert child.profile.first_name == "Mia" and child.link.relationship == "child"
    assert not child.may_take_over


def test_listing_relatives_takes_three_queries_whatever_their_number(
    holder, django_assert_num_queries
):
    for number in range(5):
        relatives.relative_add(
            holder=holder, first_name=f"Kind{number}", last_name="M", date_of_birth=years_ago(2)
        )
    # As in a request (vault's middleware opens the per-request key cache).
    with keys.request_key_cache(), django_assert_num_queries(3):
        listed = relatives.relatives_of(holder=holder)
        names = [r.profile.first_name for r in listed]
    assert names == [f"Kind{n}" for n in range(5)]


def test_a_relative_is_added_with_their_own_insurance_encrypted(holder):
    added = relatives.relative_add(
        holder=holder,
        first_name="Paul",
        last_name="Mustermann",
        date_of_birth=years_ago(3),
        insurance_type="gesetzlich",
        insurer_name="AOK Nordost",
        insurance_number="A123456780",
    )

    profile = PatientProfile.objects.get(patient=added.user)
    assert (profile.insurance_type, profile.insurer_name, profile.insurance_number) == (
        "gesetzlich",
        "AOK Nordost",
        "A123456780",
    )
    for column in ("insurance_type", "insurer_name", "insurance_number"):
        stored = stored_value(PatientProfile, added.user.pk, column)
        assert stored.startswith("pt1$")
        assert "AOK" not in stored and "A123456780" not in stored


def test_a_wrong_insurance_number_for_a_relative_is_a_field_error_and_adds_nobody(holder):
    with pytest.raises(InvalidInput) as refused:
        relatives.relative_add(
            holder=holder,
            first_name="Paul",
            last_name="Mustermann",
            date_of_birth=years_ago(3),
            insurance_type="privat",
            insurance_number="A123456781",
        )

    assert [error["field"] for error in refused.value.errors] == ["insurance_number"]
    assert not RelativeLink.objects.filter(holder=holder).exists()
