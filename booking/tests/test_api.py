"""Appointments through the HTTP layer, as patients and clinics use them: booking rules, who
sees what, cancelling with the cut-off, the iCalendar file, and the staff schedule."""

import datetime
import uuid

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from icalendar import Calendar

from accounts.models import Role
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from booking.models import Appointment, AppointmentStatus, Slot
from booking.services import appointment_book, appointment_cancel
from booking.tests.conftest import CLINIC_ADDRESS, CLINIC_NAME
from booking.tests.factories import (
    bearer,
    book,
    days_ahead,
    membership_of,
    post_json,
    practitioner_create,
    slot_create,
    staff_create,
    token_for,
)

pytestmark = pytest.mark.django_db

REASON = "Ausschlag am Unterarm seit Ostern"


def error(response) -> tuple[int, str]:
    body = response.json()
    assert body["detail"]
    return response.status_code, body["code"]


def in_hours(hours: float) -> datetime.datetime:
    return (timezone.now() + datetime.timedelta(hours=hours)).replace(second=0, microsecond=0)


@pytest.fixture
def booked(api_client, slot, patient):
    """The patient's appointment on `slot`, booked over HTTP (its JSON body)."""
    response = book(api_client, patient, slot, reason=REASON)
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def outsiders(make_patient, clinic):
    """Tokens of everyone who must not see the clinic's appointments."""
    other_clinic = ClinicFactory()
    return {
        "another patient": make_patient(),
        "a practitioner of another clinic": token_for(practitioner_create(clinic=other_clinic)),
        "an admin of another clinic": token_for(
            staff_create(clinic=other_clinic, role=Role.CLINIC_ADMIN)
        ),
        "an auditor": token_for(staff_create(clinic=clinic, role=Role.AUDITOR)),
    }


# --- Booking -------------------------------------------------------------------------------


def test_a_patient_books_a_free_slot(api_client, slot, patient, doctor, clinic):
    response = book(api_client, patient, slot, reason=REASON)

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "booked"
    assert body["reason"] == REASON
    assert body["cancelled_at"] is None
    assert "patient" not in body  # the snapshot is for the clinic
    assert body["slot"]["id"] == slot.public_id
    assert body["slot"]["clinic"] == {"id": clinic.pk, "name": CLINIC_NAME, "city": "Berlin"}
    assert body["slot"]["practitioner"] == {"id": doctor.pk, "name": "Anna Berger"}
    assert body["slot"]["specialty"]["slug"] == "allgemeinmedizin"
    appointment = Appointment.objects.get(pk=body["id"])
    assert (appointment.patient, appointment.slot, appointment.status) == (
        patient.user,
        slot,
        AppointmentStatus.BOOKED,
    )
    slot.refresh_from_db()
    assert slot.is_booked is True


def test_a_taken_slot_is_409_slot_taken(api_client, booked, slot, make_patient):
    response = book(api_client, make_patient(), slot)

    assert error(response) == (409, "slot_taken")
    assert Appointment.objects.count() == 1


def test_a_past_slot_is_409_slot_in_past_and_stays_free(api_client, doctor, patient):
    past = slot_create(practitioner=doctor, starts_at=in_hours(-1))

    response = book(api_client, patient, past)

    assert error(response) == (409, "slot_in_past")
    past.refresh_from_db()
    assert past.is_booked is False
    assert not Appointment.objects.exists()


@pytest.mark.parametrize(
    "slot_id",
    [
        "slot-999999",
        "slot-abc",
        "",
        "slot-",
        "slot-0",
        "999",
        "SLOT-1",
        "slot-1.5",
        "slot-" + "9" * 19,
    ],
)
def test_unknown_and_malformed_slot_ids_are_404_slot_not_found(api_client, slot, patient, slot_id):
    response = book(api_client, patient, slot_id)

    assert error(response) == (404, "slot_not_found")
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("body", [{}, {"slot_id": None}, {"slot_id": 12}, {"slot_id": "s" * 41}])
def test_a_missing_or_invalid_slot_id_is_422(api_client, patient, body):
    response = post_json(api_client, "/api/appointments", body, patient)

    assert error(response) == (422, "validation_error")
    assert response.json()["errors"][0]["field"] == "slot_id"


def test_a_patient_cannot_hold_two_overlapping_appointments(api_client, clinic, patient):
    ten = in_hours(72)
    book(
        api_client,
        patient,
        slot_create(practitioner=practitioner_create(clinic=clinic), starts_at=ten),
    )
    elsewhere = slot_create(
        practitioner=practitioner_create(clinic=ClinicFactory()),
        starts_at=ten + datetime.timedelta(minutes=10),
    )
    right_after = slot_create(
        practitioner=practitioner_create(clinic=clinic),
        starts_at=ten + datetime.timedelta(minutes=20),
    )

    assert error(book(api_client, patient, elsewhere)) == (409, "overlapping_appointment")
    elsewhere.refresh_from_db()
    assert elsewhere.is_booked is False
    assert book(api_client, patient, right_after).status_code == 201


def test_after_cancelling_the_patient_may_book_the_same_time_again(
    api_client, slot, patient, booked
):
    api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(patient))

    assert book(api_client, patient, slot).status_code == 201


def test_a_reason_of_up_to_500_characters_is_accepted(api_client, slot, doctor, patient):
    too_long = book(api_client, patient, slot, reason="x" * 501)
    assert error(too_long) == (422, "validation_error")
    assert too_long.json()["errors"][0]["field"] == "reason"
    assert not Appointment.objects.exists()

    response = book(api_client, patient, slot, reason="x" * 500)

    assert response.status_code == 201
    assert Appointment.objects.get().reason == "x" * 500


@pytest.mark.parametrize("role", [Role.PRACTITIONER, Role.CLINIC_ADMIN, Role.AUDITOR])
def test_staff_cannot_book(api_client, slot, clinic, role):
    token = token_for(staff_create(clinic=clinic, role=role))

    assert error(book(api_client, token, slot)) == (403, "not_a_patient")
    assert not Appointment.objects.exists()


def test_booking_needs_a_token(api_client, slot):
    assert error(book(api_client, None, slot)) == (401, "not_authenticated")


def test_fields_a_client_must_not_set_are_ignored(api_client, slot, patient, make_patient):
    other = make_patient()
    other_clinic = ClinicFactory()

    response = book(
        api_client,
        patient,
        slot,
        patient=other.user.pk,
        patient_id=other.user.pk,
        status="cancelled",
        clinic_id=other_clinic.pk,
        starts_at="2020-01-01T00:00:00Z",
        id=str(uuid.uuid4()),
    )

    assert response.status_code == 201
    appointment = Appointment.objects.get()
    assert str(appointment.pk) == response.json()["id"]
    assert appointment.patient == patient.user
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.slot.clinic_id == slot.clinic_id
    assert appointment.starts_at == slot.starts_at


def test_booking_accepts_a_form_encoded_body(api_client, slot, patient):
    response = api_client.post(
        "/api/appointments", data={"slot_id": slot.public_id}, **bearer(patient)
    )

    assert response.status_code == 201


# --- Who sees an appointment ----------------------------------------------------------------


def test_the_clinics_staff_see_the_booking_snapshot_and_reason(api_client, booked, doctor, clinic):
    admin = staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)
    patient_id = Appointment.objects.get(pk=booked["id"]).patient_id

    for staff_user in (doctor, admin):
        response = api_client.get(
            f"/api/appointments/{booked['id']}", **bearer(token_for(staff_user))
        )

        assert response.status_code == 200
        body = response.json()
        assert body["patient"] == {
            "id": patient_id,
            "first_name": "Erika",
            "last_name": "Mustermann",
            "date_of_birth": "1984-08-12",
            "insurance_type": None,  # the profile has none yet
        }
        assert body["reason"] == REASON


def test_the_owner_sees_the_reason_but_no_snapshot(api_client, booked, patient):
    response = api_client.get(f"/api/appointments/{booked['id']}", **bearer(patient))

    assert response.status_code == 200
    body = response.json()
    assert body["reason"] == REASON
    assert "patient" not in body


def test_nobody_else_finds_the_appointment(api_client, booked, outsiders):
    for who, token in outsiders.items():
        for path in ("", "/ics"):
            response = api_client.get(f"/api/appointments/{booked['id']}{path}", **bearer(token))
            assert error(response) == (404, "not_found"), (who, path)


@pytest.mark.parametrize("appointment_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_unknown_appointment_ids_are_404(api_client, patient, appointment_id):
    response = api_client.get(f"/api/appointments/{appointment_id}", **bearer(patient))

    assert error(response) == (404, "not_found")


def test_the_list_shows_patients_their_own_and_staff_their_clinics(
    api_client, booked, patient, make_patient, doctor
):
    other = make_patient()
    elsewhere = slot_create(practitioner=practitioner_create(clinic=ClinicFactory()))
    theirs = book(api_client, other, elsewhere).json()

    def listed(token, **query):
        response = api_client.get("/api/appointments", query, **bearer(token))
        assert response.status_code == 200
        return [item["id"] for item in response.json()["items"]]

    assert listed(patient) == [booked["id"]]
    assert listed(other) == [theirs["id"]]
    assert listed(token_for(doctor)) == [booked["id"]]
    api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(patient))
    assert listed(patient, status="booked") == []
    assert listed(patient, status="cancelled") == [booked["id"]]
    day = timezone.localtime(Slot.objects.get(appointments__id=booked["id"]).starts_at).date()
    assert listed(patient, date_from=day.isoformat(), date_to=day.isoformat()) == [booked["id"]]
    assert listed(patient, date_from=(day + datetime.timedelta(days=1)).isoformat()) == []


# --- Cancelling ----------------------------------------------------------------------------


def test_the_owner_cancels_before_the_cut_off_and_the_slot_is_free_again(
    api_client, booked, patient, slot
):
    response = api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(patient))

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"]
    slot.refresh_from_db()
    assert slot.is_booked is False
    free = api_client.get("/api/slots", {"practitioner": slot.practitioner_id}).json()["items"]
    assert slot.public_id in [item["id"] for item in free]
    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_CANCEL)
    assert event.subject_ref == subject_pseudonym(patient.user.pk)
    assert event.details == {"by": "patient"}


@pytest.mark.parametrize(("cutoff_hours", "hours_ahead"), [(24, 23), (48, 30)])
def test_the_owner_cannot_cancel_after_the_cut_off(
    api_client, clinic, doctor, patient, cutoff_hours, hours_ahead
):
    clinic.cancellation_cutoff_hours = cutoff_hours
    clinic.save()
    soon = slot_create(practitioner=doctor, starts_at=in_hours(hours_ahead))
    appointment_id = book(api_client, patient, soon).json()["id"]

    response = api_client.post(f"/api/appointments/{appointment_id}/cancel", **bearer(patient))

    assert error(response) == (409, "cancellation_cutoff_passed")
    assert str(cutoff_hours) in response.json()["detail"]
    assert Appointment.objects.get(pk=appointment_id).status == AppointmentStatus.BOOKED
    soon.refresh_from_db()
    assert soon.is_booked is True


def test_the_cut_off_is_exactly_the_clinics_hours_before_the_start(api_client, slot, patient):
    appointment_id = book(api_client, patient, slot).json()["id"]
    cutoff = slot.starts_at - datetime.timedelta(hours=24)

    with time_machine.travel(cutoff + datetime.timedelta(seconds=1), tick=False):
        late = api_client.post(
            f"/api/appointments/{appointment_id}/cancel", **bearer(token_for(patient.user))
        )
    with time_machine.travel(cutoff, tick=False):
        in_time = api_client.post(
            f"/api/appointments/{appointment_id}/cancel", **bearer(token_for(patient.user))
        )

    assert error(late) == (409, "cancellation_cutoff_passed")
    assert in_time.status_code == 200


@pytest.mark.parametrize("role", [Role.PRACTITIONER, Role.CLINIC_ADMIN])
def test_the_clinics_staff_cancel_at_any_time(api_client, clinic, doctor, patient, role):
    soon = slot_create(practitioner=doctor, starts_at=in_hours(1))
    appointment_id = book(api_client, patient, soon).json()["id"]
    staff_user = doctor if role == Role.PRACTITIONER else staff_create(clinic=clinic, role=role)

    response = api_client.post(
        f"/api/appointments/{appointment_id}/cancel", **bearer(token_for(staff_user))
    )

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert "patient" in response.json()  # staff see the snapshot in the answer too
    soon.refresh_from_db()
    assert soon.is_booked is False
    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_CANCEL)
    assert (event.actor_id, event.details) == (staff_user.pk, {"by": "clinic"})


def test_cancelling_twice_is_409_not_cancellable(api_client, booked, patient, doctor):
    api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(patient))

    for token in (patient, token_for(doctor)):
        response = api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(token))
        assert error(response) == (409, "not_cancellable")
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_CANCEL).count() == 1


def test_nobody_else_can_cancel(api_client, booked, outsiders, slot):
    for who, token in outsiders.items():
        response = api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(token))
        assert error(response) == (404, "not_found"), who

    assert Appointment.objects.get(pk=booked["id"]).status == AppointmentStatus.BOOKED
    slot.refresh_from_db()
    assert slot.is_booked is True


# --- The iCalendar file ----------------------------------------------------------------------


def test_the_owner_gets_an_icalendar_file_with_time_and_address(api_client, booked, patient, slot):
    response = api_client.get(f"/api/appointments/{booked['id']}/ics", **bearer(patient))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    assert response["Content-Disposition"].startswith("attachment;")
    (event,) = Calendar.from_ical(response.content).walk("VEVENT")
    assert event.decoded("DTSTART") == slot.starts_at
    assert event.decoded("DTEND") == slot.ends_at
    assert CLINIC_ADDRESS in str(event["LOCATION"])
    assert CLINIC_NAME in str(event["SUMMARY"])
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["UID"]).startswith(booked["id"])
    assert b"Ausschlag" not in response.content
    assert b"Mustermann" not in response.content


def test_a_cancelled_appointments_file_says_so(api_client, booked, patient):
    api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(patient))

    response = api_client.get(f"/api/appointments/{booked['id']}/ics", **bearer(patient))

    (event,) = Calendar.from_ical(response.content).walk("VEVENT")
    assert str(event["STATUS"]) == "CANCELLED"


def _ics(api_client, appointment_id, patient) -> Calendar:
    response = api_client.get(f"/api/appointments/{appointment_id}/ics", **bearer(patient))
    assert response.status_code == 200
    return Calendar.from_ical(response.content)


@pytest.mark.parametrize("cancelled_by", ["patient", "clinic"])
def test_book_then_cancel_updates_the_imported_event(
    api_client,
    settings,
    booked,
    patient,
    doctor,
    sent_mails,
    cancelled_by,
):
    settings.PATTERM_PUBLIC_URL = "https://portal.praxis.example:8443/"
    first = _ics(api_client, booked["id"], patient)
    canceller = patient if cancelled_by == "patient" else token_for(doctor)
    sent_mails().clear()  # the confirmation

    api_client.post(f"/api/appointments/{booked['id']}/cancel", **bearer(canceller))
    second = _ics(api_client, booked["id"], patient)

    (booked_event,) = first.walk("VEVENT")
    (cancelled_event,) = second.walk("VEVENT")
    assert str(first["METHOD"]) == "PUBLISH"
    assert str(second["METHOD"]) == "CANCEL"
    assert str(cancelled_event["UID"]) == str(booked_event["UID"])
    assert str(booked_event["UID"]) == f"{booked['id']}@portal.praxis.example"
    assert int(cancelled_event["SEQUENCE"]) > int(booked_event["SEQUENCE"])
    assert str(cancelled_event["STATUS"]) == "CANCELLED"
    assert str(cancelled_event["ORGANIZER"]).startswith("mailto:")
    # The patient hears of it with the file that removes the event from their calendar.
    (mail,) = sent_mails()
    assert mail.to == [patient.user.email]
    ((filename, content, mimetype),) = mail.attachments
    assert filename == f"termin-{booked['id']}.ics"
    assert mimetype.startswith("text/calendar; method=CANCEL")
    (attached,) = Calendar.from_ical(content).walk("VEVENT")
    assert str(attached["UID"]) == str(booked_event["UID"])
    assert int(attached["SEQUENCE"]) == int(cancelled_event["SEQUENCE"])


def test_the_event_description_names_practitioner_specialty_and_link_never_the_reason(
    api_client, settings, booked, patient
):
    settings.PATTERM_PUBLIC_URL = "https://portal.praxis.example"

    (event,) = _ics(api_client, booked["id"], patient).walk("VEVENT")

    description = str(event["DESCRIPTION"])
    assert "Anna Berger" in description
    assert f"https://portal.praxis.example/appointments/{booked['id']}/" in description
    assert str(Appointment.objects.get(pk=booked["id"]).slot.specialty.name) in description
    assert REASON not in description
    assert "Ausschlag" not in str(event.to_ical())


def test_the_confirmation_email_attaches_the_calendar_file(api_client, slot, patient, sent_mails):
    response = book(api_client, patient, slot, reason=REASON)

    (mail,) = sent_mails()
    ((filename, content, mimetype),) = mail.attachments
    assert filename == f"termin-{response.json()['id']}.ics"
    assert mimetype.startswith("text/calendar; method=PUBLISH")
    calendar = Calendar.from_ical(content)
    assert str(calendar["METHOD"]) == "PUBLISH"
    (event,) = calendar.walk("VEVENT")
    assert int(event["SEQUENCE"]) == 0
    assert "Ausschlag" not in content


def test_the_clinics_staff_get_no_icalendar_file(api_client, booked, doctor):
    response = api_client.get(f"/api/appointments/{booked['id']}/ics", **bearer(token_for(doctor)))

    assert error(response) == (404, "not_found")


# --- The staff schedule ----------------------------------------------------------------------


@pytest.fixture
def week(clinic, doctor, make_patient):
    """Two patients with the clinic's doctor, one with a colleague, one cancelled, and one
    patient at another clinic; all within the next week."""
    colleague = practitioner_create(clinic=clinic)
    elsewhere = practitioner_create(clinic=ClinicFactory())
    patients = {
        name: make_patient(first_name=name) for name in ("Alma", "Bert", "Cora", "Dora", "Emil")
    }
    plan = [
        ("Alma", doctor, days_ahead(2, 9)),
        ("Bert", doctor, days_ahead(3, 9)),
        ("Cora", colleague, days_ahead(2, 10)),
        ("Dora", doctor, days_ahead(4, 9)),
        ("Emil", elsewhere, days_ahead(2, 9)),
    ]
    appointments = {}
    for name, practitioner, starts_at in plan:
        slot = slot_create(practitioner=practitioner, starts_at=starts_at)
        appointments[name] = appointment_book(patient=patients[name].user, slot_id=slot.public_id)
    appointment_cancel(actor=doctor, appointment_id=appointments["Dora"].pk)
    return {"patients": patients, "appointments": appointments, "colleague": colleague}


def schedule(api_client, user, **query):
    return api_client.get("/api/medical/schedule", query, **bearer(token_for(user)))


def test_a_practitioner_sees_their_own_booked_appointments_with_snapshots(api_client, week, doctor):
    response = schedule(api_client, doctor)

    assert response.status_code == 200
    body = response.json()
    assert [item["patient"]["first_name"] for item in body] == ["Alma", "Bert"]
    assert body[0]["patient"]["last_name"] == "Mustermann"
    assert body[0]["patient"]["date_of_birth"] == "1984-08-12"
    assert body[0]["slot"]["practitioner"]["id"] == doctor.pk


def test_a_clinic_admin_sees_the_clinics_schedule(api_client, week, clinic):
    admin = staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)

    body = schedule(api_client, admin).json()

    assert [item["patient"]["first_name"] for item in body] == ["Alma", "Cora", "Bert"]


def test_each_patient_shown_in_a_schedule_is_audited(api_client, week, doctor, clinic):
    before = AuditEvent.objects.filter(action=AuditAction.SCHEDULE_READ).count()

    schedule(api_client, doctor)

    rows = AuditEvent.objects.filter(action=AuditAction.SCHEDULE_READ).order_by("seq")[before:]
    shown = {week["patients"][name].user.pk for name in ("Alma", "Bert")}
    assert sorted(row.subject_ref for row in rows) == sorted(subject_pseudonym(pk) for pk in shown)
    for row in rows:
        assert (row.actor_id, row.clinic_id, row.purpose) == (doctor.pk, clinic.pk, "treatment")
        assert row.object_type == "booking_snapshot"


def test_an_empty_schedule_audits_nothing(api_client, doctor):
    response = schedule(api_client, doctor)

    assert response.json() == []
    assert not AuditEvent.objects.filter(action=AuditAction.SCHEDULE_READ).exists()


def test_the_schedule_window_follows_the_dates(api_client, week, doctor):
    day = timezone.localtime(days_ahead(3, 9)).date().isoformat()

    body = schedule(api_client, doctor, date_from=day, date_to=day).json()

    assert [item["patient"]["first_name"] for item in body] == ["Bert"]


@pytest.mark.parametrize(
    "query",
    [
        {"date_from": "2030-01-01", "date_to": "2030-03-01"},  # more than 31 days
        {"date_from": "2030-01-02", "date_to": "2030-01-01"},  # backwards
        {"date_from": "01.01.2030"},
    ],
)
def test_a_bad_schedule_window_is_422(api_client, doctor, query):
    assert error(schedule(api_client, doctor, **query)) == (422, "validation_error")


def test_patients_and_auditors_have_no_schedule(api_client, clinic, patient):
    auditor = token_for(staff_create(clinic=clinic, role=Role.AUDITOR))

    for token in (patient, auditor):
        response = api_client.get("/api/medical/schedule", **bearer(token))
        assert error(response) == (403, "forbidden")
    assert not AuditEvent.objects.filter(action=AuditAction.SCHEDULE_READ).exists()


# --- Reference data --------------------------------------------------------------------------


def test_clinics_list_the_specialties_their_practitioners_offer(api_client, clinic, doctor):
    practitioner_create(clinic=clinic, specialties=("dermatologie", "allgemeinmedizin"))
    ClinicFactory(name="Zahnarzt ohne Ärzte")

    response = api_client.get("/api/clinics", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json()["items"]}
    assert by_name[CLINIC_NAME]["address"] == CLINIC_ADDRESS
    assert by_name[CLINIC_NAME]["specialties"] == [
        {"slug": "allgemeinmedizin", "name": "General practice"},
        {"slug": "dermatologie", "name": "Dermatology"},
    ]
    assert by_name["Zahnarzt ohne Ärzte"]["specialties"] == []
    specialties = api_client.get("/api/specialties", HTTP_ACCEPT_LANGUAGE="de").json()
    assert [item["name"] for item in specialties["items"]] == ["Allgemeinmedizin", "Dermatologie"]


def test_the_staff_appointment_list_costs_the_same_queries_for_3_or_12(api_client, make_patient):
    """No query per appointment: the viewer's clinics are looked up once per page."""
    doctor = practitioner_create()
    admin_token = token_for(staff_create(clinic=membership_of(doctor).clinic, role="clinic_admin"))

    def count_queries(appointments: int) -> int:
        for _ in range(appointments):
            patient = make_patient()
            book(api_client, patient, slot_create(practitioner=doctor))
        with CaptureQueriesContext(connection) as queries:
            response = api_client.get("/api/appointments?limit=50", **bearer(admin_token))
        assert response.status_code == 200
        return len(queries)

    assert count_queries(3) == count_queries(9)


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/api/medical/schedule", {"date_from": "0001-01-01"}),
        ("/api/medical/schedule", {"date_from": "9999-12-30"}),
        ("/api/medical/schedule", {"date_from": "9999-12-31", "date_to": "9999-12-31"}),
        ("/api/appointments", {"date_from": "0001-01-01"}),
        ("/api/appointments", {"date_to": "9999-12-31"}),
        ("/api/slots", {"date_from": "0001-01-01"}),
        ("/api/slots", {"date_to": "9999-12-31"}),
    ],
)
def test_filter_days_at_the_ends_of_the_calendar_are_422_not_500(api_client, doctor, url, query):
    # Found by schemathesis: local midnight of 0001-01-01 (or the day after 9999-12-31) overflowed.
    response = api_client.get(url, query, **bearer(token_for(doctor)))

    assert response.status_code == 422, response.content[:300]
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["field"] in ("date_from", "date_to")
