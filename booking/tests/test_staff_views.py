"""The staff pages of booking: the practitioner's schedule and the clinic admin's dashboard,
opening hours, absences and slot series (booking/staff_views.py)."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from audit.tests.builders import events_since, head_seq
from booking.models import Absence, OpeningHours, Slot
from booking.services import appointment_book
from booking.tests.factories import specialty_get
from patterm.tests.staff_world import (
    P_FIRST,
    P_LAST,
    Q_FIRST,
    REASON,
    slot_at,
    status_table,
)

pytestmark = pytest.mark.django_db

ADMIN_ONLY = (302, 403, 403, 403, 200, 200, 403)
ADMIN_REMOVES_OWN = (302, 403, 403, 403, 302, 404, 403)


def _url(world, page: str) -> str:
    objects = {
        "opening_hours_remove": world.hours_north.pk,
        "absence_remove": world.absence_north.pk,
    }
    args = [objects[page]] if page in objects else []
    return reverse(f"booking_staff:{page}", args=args)


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table(
        {
            "schedule": (302, 403, 200, 200, 403, 403, 403),
            "clinic": ADMIN_ONLY,
            "opening_hours": ADMIN_ONLY,
            "absences": ADMIN_ONLY,
            "slots": ADMIN_ONLY,
            "motives": ADMIN_ONLY,
        }
    ),
)
def test_who_opens_which_page(staff_world, page, role, expected):
    response = staff_world.client_for(role).get(_url(staff_world, page))

    assert response.status_code == expected
    if role == "anonymous":
        assert response.url.startswith(reverse("accounts:login"))


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table({"opening_hours_remove": ADMIN_REMOVES_OWN, "absence_remove": ADMIN_REMOVES_OWN}),
)
def test_who_removes_the_north_clinics_hours_and_absences(staff_world, page, role, expected):
    model = OpeningHours if page == "opening_hours_remove" else Absence
    target = staff_world.hours_north if model is OpeningHours else staff_world.absence_north

    response = staff_world.client_for(role).post(_url(staff_world, page))

    assert response.status_code == expected
    assert model.objects.filter(pk=target.pk).exists() == (expected != 302 or role == "anonymous")


@pytest.mark.parametrize(
    ("page", "role", "expected"),
    status_table({"move": (302, 403, 200, 404, 200, 404, 403)}),
)
def test_who_opens_the_move_page_of_the_north_clinics_appointment(
    staff_world, page, role, expected
):
    url = reverse("booking_staff:move", args=[staff_world.appointment.pk])
    assert staff_world.client_for(role).get(url).status_code == expected


def test_the_practice_moves_an_appointment_from_the_schedule_and_the_patient_is_mailed(
    staff_world, sent_mails
):
    appointment = staff_world.appointment
    doctor = staff_world.users["practitioner"]
    later = slot_at(practitioner=doctor, clinic=staff_world.north, days=5, hour=11)
    slot_at(
        practitioner=staff_world.users["practitioner_other"],
        clinic=staff_world.south,
        days=5,
        hour=12,
    )  # another practitioner's: not offered
    sent_mails().clear()
    client = staff_world.client_for("practitioner")
    url = reverse("booking_staff:move", args=[appointment.pk])

    schedule = client.get(reverse("booking_staff:schedule"))
    assert url in schedule.text and "Verschieben" in schedule.text
    page = client.get(url)
    listed = [slot.public_id for _, slots in page.context["days"] for slot in slots]
    assert later.public_id in listed
    assert f"{P_FIRST} {P_LAST}" in page.text  # whose appointment it is
    assert "mit dem Patienten vereinbart" in page.text
    moved = client.post(url, {"slot_id": later.public_id}, follow=True)
    unknown = client.post(url, {"slot_id": "slot-999999"})

    assert moved.redirect_chain[-1][0] == reverse("booking_staff:schedule")
    assert "Der Termin ist verschoben" in moved.text
    appointment.refresh_from_db()
    assert appointment.slot_id == later.pk
    (message,) = sent_mails()
    assert message.to == [staff_world.patient.email]
    event = AuditEvent.objects.get(action=AuditAction.APPOINTMENT_MOVE)
    assert (event.actor_id, event.details["by"]) == (doctor.pk, "clinic")
    assert unknown.status_code == 404  # the refusal explained on the page, nothing changed
    assert 'role="alert"' in unknown.text
    appointment.refresh_from_db()
    assert appointment.slot_id == later.pk


def test_the_schedule_shows_the_booking_snapshot_links_the_record_and_is_audited(staff_world):
    client = staff_world.client_for("practitioner")
    started = head_seq()

    response = client.get(reverse("booking_staff:schedule"))

    text = response.text
    assert f"{P_FIRST} {P_LAST}" in text
    assert REASON in text
    assert reverse("vault_staff:record", args=[staff_world.patient.pk]) in text
    assert Q_FIRST not in text  # booked with the other clinic's practitioner
    reads = [e for e in events_since(started) if e.action == AuditAction.SCHEDULE_READ]
    assert [(e.subject_ref, e.clinic_id, e.actor_id) for e in reads] == [
        (
            subject_pseudonym(staff_world.patient.pk),
            staff_world.north.pk,
            staff_world.users["practitioner"].pk,
        )
    ]


def test_a_week_without_appointments_says_so(staff_world):
    later = (timezone.localdate() + datetime.timedelta(days=60)).isoformat()

    response = staff_world.client_for("practitioner").get(
        reverse("booking_staff:schedule"), {"date_from": later}
    )

    assert response.status_code == 200
    assert P_FIRST not in response.text
    assert 'class="empty"' in response.text


def test_the_clinic_dashboard_shows_only_the_admins_clinic(staff_world):
    north = staff_world.client_for("clinic_admin").get(reverse("booking_staff:clinic")).text
    south = staff_world.client_for("clinic_admin_other").get(reverse("booking_staff:clinic")).text

    assert P_FIRST in north and Q_FIRST not in north
    assert Q_FIRST in south and P_FIRST not in south


def _schedule_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("booking_staff:schedule")).status_code == 200
    return len(queries)


def test_the_schedules_queries_grow_only_by_one_audit_row_per_patient(staff_world, make_patient):
    """Appointments do not add queries; each further patient shown adds exactly the queries of
    the one audit row the service writes for them (the same as the API's)."""
    doctor, north = staff_world.users["practitioner"], staff_world.north
    client = staff_world.client_for("practitioner")
    one_patient = _schedule_queries(client)
    for hour in (11, 12, 13):  # more appointments of the same patient
        appointment_book(
            patient=staff_world.patient,
            slot_id=slot_at(practitioner=doctor, clinic=north, days=3, hour=hour).public_id,
        )
    assert _schedule_queries(client) == one_patient

    def another_patient(hour):
        patient = make_patient(email=f"weitere{hour}@example.com").user
        slot = slot_at(practitioner=doctor, clinic=north, days=4, hour=hour)
        appointment_book(patient=patient, slot_id=slot.public_id)

    another_patient(8)
    two_patients = _schedule_queries(client)
    another_patient(9)
    another_patient(10)
    assert _schedule_queries(client) - one_patient == 3 * (two_patients - one_patient)


def _post_hours(client, world, **overrides):
    data = {
        "practitioner": world.membership("practitioner").pk,
        "weekday": 2,
        "start_time": "14:00",
        "end_time": "17:00",
        "slot_minutes": 15,
        "specialty": specialty_get("allgemeinmedizin").pk,
    }
    data.update(overrides)
    return client.post(reverse("booking_staff:opening_hours"), data)


def test_a_clinic_admin_adds_opening_hours(staff_world):
    client = staff_world.client_for("clinic_admin")

    response = _post_hours(client, staff_world)

    assert response.status_code == 302
    added = OpeningHours.objects.get(weekday=2)
    assert (added.start_time, added.slot_minutes) == (datetime.time(14), 15)
    page = client.get(response.url)
    assert "alert--success" in page.text


def test_hours_in_the_wrong_order_are_refused_next_to_the_field_keeping_the_input(staff_world):
    response = _post_hours(
        staff_world.client_for("clinic_admin"), staff_world, start_time="17:00", end_time="09:30"
    )

    assert response.status_code == 200
    assert not OpeningHours.objects.filter(weekday=2).exists()
    assert response.context["form"].errors
    assert 'value="09:30"' in response.text


def test_another_clinics_practitioner_is_no_choice(staff_world):
    response = _post_hours(
        staff_world.client_for("clinic_admin"),
        staff_world,
        practitioner=staff_world.membership("practitioner_other").pk,
    )

    assert response.status_code == 200
    assert "practitioner" in response.context["form"].errors
    assert not OpeningHours.objects.filter(weekday=2).exists()


def test_a_clinic_admin_adds_an_absence(staff_world):
    day = timezone.localdate() + datetime.timedelta(days=30)
    response = staff_world.client_for("clinic_admin").post(
        reverse("booking_staff:absences"),
        {
            "practitioner": staff_world.membership("practitioner").pk,
            "starts_at": f"{day}T08:00",
            "ends_at": f"{day}T18:00",
        },
    )

    assert response.status_code == 302
    absence = Absence.objects.order_by("-pk").first()
    assert timezone.localtime(absence.starts_at).hour == 8


def test_an_absence_ending_before_it_starts_is_refused(staff_world):
    day = timezone.localdate() + datetime.timedelta(days=30)
    before = Absence.objects.count()
    response = staff_world.client_for("clinic_admin").post(
        reverse("booking_staff:absences"),
        {
            "practitioner": staff_world.membership("practitioner").pk,
            "starts_at": f"{day}T18:00",
            "ends_at": f"{day}T08:00",
        },
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert Absence.objects.count() == before


def _series(world, **overrides):
    first = timezone.localdate() + datetime.timedelta(days=14)
    data = {
        "practitioner": world.membership("practitioner").pk,
        "specialty": specialty_get("allgemeinmedizin").pk,
        "date_from": first.isoformat(),
        "date_to": (first + datetime.timedelta(days=6)).isoformat(),
        "start_time": "09:00",
        "end_time": "10:00",
        "slot_minutes": 20,
        "weekdays": [0, 2],
    }
    data.update(overrides)
    return data


def test_a_clinic_admin_generates_a_series_of_slots_audited(staff_world):
    client = staff_world.client_for("clinic_admin")
    before = Slot.objects.count()
    started = head_seq()

    response = client.post(reverse("booking_staff:slots"), _series(staff_world))

    assert response.status_code == 302
    assert Slot.objects.count() - before == 6  # two weekdays, three 20-minute slots each
    (event,) = [e for e in events_since(started) if e.action == AuditAction.SLOTS_CREATE]
    assert event.details == {"count": 6, "practitioner": staff_world.users["practitioner"].pk}
    assert "6" in client.get(response.url).text


def test_a_series_ending_before_it_starts_is_refused_by_the_service(staff_world):
    response = staff_world.client_for("clinic_admin").post(
        reverse("booking_staff:slots"), _series(staff_world, start_time="11:00")
    )

    assert response.status_code == 200
    assert "end_time" in response.context["form"].errors
    assert 'value="11:00"' in response.text


def test_a_series_over_existing_slots_is_a_form_error(staff_world):
    client = staff_world.client_for("clinic_admin")
    client.post(reverse("booking_staff:slots"), _series(staff_world))

    response = client.post(
        reverse("booking_staff:slots"), _series(staff_world, start_time="09:10", end_time="09:30")
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()


@pytest.mark.parametrize(
    ("role", "start"),
    [
        (Role.PRACTITIONER, "booking_staff:schedule"),
        (Role.CLINIC_ADMIN, "booking_staff:clinic"),
        (Role.AUDITOR, "audit_staff:events"),
    ],
)
def test_staff_land_on_their_dashboard(staff_world, role, start):
    name = {Role.PRACTITIONER: "practitioner", Role.CLINIC_ADMIN: "clinic_admin"}.get(
        role, "auditor"
    )
    response = staff_world.client_for(name).get(reverse("start"))

    assert response.url == reverse(start)


def test_no_audit_row_holds_the_snapshot(staff_world):
    staff_world.client_for("clinic_admin").get(reverse("booking_staff:clinic"))

    stored = " ".join(str(row) for row in AuditEvent.objects.values_list())
    assert P_FIRST not in stored and REASON not in stored


def _list_queries(client, page: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse(f"booking_staff:{page}")).status_code == 200
    return len(queries)


def test_the_set_up_lists_queries_do_not_grow_with_their_rows(staff_world):
    client = staff_world.client_for("clinic_admin")
    membership = staff_world.membership("practitioner")
    before = {page: _list_queries(client, page) for page in ("opening_hours", "absences")}
    for weekday in range(1, 6):
        OpeningHours.objects.create(
            membership=membership,
            weekday=weekday,
            start_time=datetime.time(8),
            end_time=datetime.time(12),
            specialty=specialty_get("allgemeinmedizin"),
        )
        start = timezone.now() + datetime.timedelta(days=40 + 3 * weekday)
        Absence.objects.create(
            membership=membership, starts_at=start, ends_at=start + datetime.timedelta(days=1)
        )

    assert {page: _list_queries(client, page) for page in before} == before


# --- Visit motives (issue 16) ----------------------------------------------------------------


def test_a_clinic_admin_adds_a_motive_on_the_page_and_removes_only_their_clinics(staff_world):
    from booking.models import VisitMotive

    client = staff_world.client_for("clinic_admin")
    membership = staff_world.hours_north.membership
    page = client.get(reverse("booking_staff:motives"))
    body = {
        "practitioner": membership.pk,
        "specialty": specialty_get("allgemeinmedizin").pk,
        "name_de": "Impfung",
        "name_en": "Vaccination",
        "duration_minutes": 10,
        "bookable_online": "on",
        "patients": "both",
        "accepts_statutory": "on",
        "note_de": "Bitte Impfpass mitbringen",
    }

    added = client.post(reverse("booking_staff:motives"), body)
    none_accepted = client.post(reverse("booking_staff:motives"), {**body, "accepts_statutory": ""})
    wrong_specialty = client.post(
        reverse("booking_staff:motives"),
        {**body, "specialty": specialty_get("kardiologie").pk},
    )
    other_clinics = VisitMotive.objects.get(membership=staff_world.hours_south.membership)
    foreign = client.post(reverse("booking_staff:motive_remove", args=[other_clinics.pk]))

    assert "Erstuntersuchung Nordarzt" in page.text
    assert "Erstuntersuchung Suedarzt" not in page.text
    assert added.status_code == 302
    motive = VisitMotive.objects.get(name_de="Impfung")
    assert (motive.membership, motive.duration_minutes, motive.accepted_insurance_types) == (
        membership,
        10,
        ["gesetzlich"],
    )
    assert "accepts_statutory" in none_accepted.context["form"].errors
    assert "specialty" in wrong_specialty.context["form"].errors
    assert foreign.status_code == 404
    assert VisitMotive.objects.filter(pk=other_clinics.pk).exists()
    removed = client.post(reverse("booking_staff:motive_remove", args=[motive.pk]))
    assert removed.status_code == 302
    assert not VisitMotive.objects.filter(pk=motive.pk).exists()
