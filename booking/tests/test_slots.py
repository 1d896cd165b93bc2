"""Slots: the public search, clinic admins creating slots, and `generate_slots` from opening
hours; times on Berlin's wall clock, across daylight saving time too."""

import datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from booking.models import Absence, OpeningHours, Slot, Weekday
from booking.tests.conftest import CLINIC_NAME
from booking.tests.factories import (
    days_ahead,
    local,
    membership_of,
    post_json,
    practitioner_create,
    slot_create,
    specialty_get,
    staff_create,
    token_for,
)

pytestmark = pytest.mark.django_db

UTC = datetime.UTC


def search(api_client, **query):
    response = api_client.get("/api/slots", query)
    assert response.status_code == 200, response.content
    return response.json()


def found(api_client, **query) -> list[str]:
    return [item["id"] for item in search(api_client, **query)["items"]]


def iso_day(moment: datetime.datetime) -> str:
    return timezone.localtime(moment).date().isoformat()


# --- Search ----------------------------------------------------------------------------------


@pytest.fixture
def catalogue(clinic, doctor):
    """Free future slots in Berlin and Munich, and slots the search must never show."""
    dermatologist = practitioner_create(clinic=clinic, specialties=("dermatologie",))
    munich = ClinicFactory(name="Hausarztpraxis an der Isar", slug="isar", city="München")
    munich_doctor = practitioner_create(clinic=munich)
    slots = {
        "berlin_gp": slot_create(practitioner=doctor, starts_at=days_ahead(5, 10)),
        "berlin_derm": slot_create(
            practitioner=dermatologist, specialty_slug="dermatologie", starts_at=days_ahead(5, 9)
        ),
        "munich_gp": slot_create(practitioner=munich_doctor, starts_at=days_ahead(6, 9)),
    }
    hidden = {
        "booked": slot_create(practitioner=doctor, starts_at=days_ahead(5, 11), is_booked=True),
        "past": slot_create(practitioner=doctor, starts_at=days_ahead(-1, 9)),
        "started": slot_create(
            practitioner=doctor,
            starts_at=timezone.now() - datetime.timedelta(minutes=5),
        ),
    }
    return {
        **{name: slot.public_id for name, slot in slots.items()},
        "hidden": {slot.public_id for slot in hidden.values()},
        "munich": munich,
        "munich_doctor": munich_doctor,
        "dermatologist": dermatologist,
    }


def test_the_search_shows_free_future_slots_ordered_by_start(api_client, catalogue, clinic, doctor):
    body = search(api_client)

    assert [item["id"] for item in body["items"]] == [
        catalogue["berlin_derm"],
        catalogue["berlin_gp"],
        catalogue["munich_gp"],
    ]
    assert (body["count"], body["count_capped"]) == (3, False)
    gp = body["items"][1]
    assert gp["clinic"] == {"id": clinic.pk, "name": CLINIC_NAME, "city": "Berlin"}
    assert gp["practitioner"] == {"id": doctor.pk, "name": "Anna Berger"}
    assert gp["specialty"]["slug"] == "allgemeinmedizin"
    assert datetime.datetime.fromisoformat(gp["starts_at"]) == days_ahead(5, 10)
    assert datetime.datetime.fromisoformat(gp["ends_at"]) == days_ahead(5, 10, 20)


def test_slots_at_the_same_time_are_ordered_by_id(api_client, clinic):
    at = days_ahead(4, 8)
    ids = [
        slot_create(practitioner=practitioner_create(clinic=clinic), starts_at=at) for _ in "abc"
    ]

    assert found(api_client) == [slot.public_id for slot in sorted(ids, key=lambda s: s.pk)]


def test_the_search_filters_by_specialty(api_client, catalogue):
    assert found(api_client, specialty="dermatologie") == [catalogue["berlin_derm"]]
    assert found(api_client, specialty="kardiologie") == []


@pytest.mark.parametrize("city", ["Berlin", "berlin", "BERLIN"])
def test_the_search_filters_by_city_in_any_case(api_client, catalogue, city):
    assert found(api_client, city=city) == [catalogue["berlin_derm"], catalogue["berlin_gp"]]


def test_the_search_finds_cities_with_umlauts(api_client, catalogue):
    assert found(api_client, city="München") == [catalogue["munich_gp"]]
    assert found(api_client, city="münchen") == [catalogue["munich_gp"]]
    assert found(api_client, city="Münche") == []


def test_the_search_filters_by_clinic_slug_or_id(api_client, catalogue):
    munich = catalogue["munich"]

    assert found(api_client, clinic="isar") == [catalogue["munich_gp"]]
    assert found(api_client, clinic=str(munich.pk)) == [catalogue["munich_gp"]]
    assert found(api_client, clinic="nirgendwo") == []


def test_the_search_filters_by_practitioner(api_client, catalogue, doctor):
    assert found(api_client, practitioner=doctor.pk) == [catalogue["berlin_gp"]]
    assert found(api_client, practitioner=catalogue["munich_doctor"].pk) == [catalogue["munich_gp"]]


def test_filters_combine(api_client, catalogue):
    assert found(api_client, city="berlin", specialty="allgemeinmedizin") == [
        catalogue["berlin_gp"]
    ]
    assert found(api_client, city="berlin", clinic="isar") == []


def test_dates_are_berlin_calendar_days_inclusive(api_client, doctor):
    late = slot_create(practitioner=doctor, starts_at=days_ahead(7, 23, 30))
    # 00:30 in Berlin is still the day before in UTC: a search by UTC days would misplace it.
    after_midnight = slot_create(practitioner=doctor, starts_at=days_ahead(8, 0, 30))
    day, next_day = iso_day(late.starts_at), iso_day(after_midnight.starts_at)

    assert found(api_client, date_from=day, date_to=day) == [late.public_id]
    assert found(api_client, date_to=day) == [late.public_id]
    assert found(api_client, date_from=next_day) == [after_midnight.public_id]
    assert found(api_client, date_from=next_day, date_to=next_day) == [after_midnight.public_id]
    assert found(api_client, date_from=day, date_to=next_day) == [
        late.public_id,
        after_midnight.public_id,
    ]
    previous_day = iso_day(late.starts_at - datetime.timedelta(days=1))
    assert found(api_client, date_to=previous_day) == []


def test_today_shows_only_what_is_still_ahead(api_client, catalogue):
    today = timezone.localdate().isoformat()

    assert set(found(api_client, date_from=today, date_to=today)).isdisjoint(catalogue["hidden"])


def test_pages_follow_limit_and_offset(api_client, catalogue):
    page = search(api_client, limit=1, offset=1)

    assert [item["id"] for item in page["items"]] == [catalogue["berlin_gp"]]
    assert page["count"] == 3
    assert search(api_client, limit=200)["count"] == 3
    assert search(api_client, offset=3)["items"] == []


def test_the_count_stops_at_the_ceiling(api_client, catalogue, settings):
    settings.PATTERM_SEARCH_COUNT_LIMIT = 2

    body = search(api_client, limit=1)

    assert (body["count"], body["count_capped"]) == (2, True)
    assert len(body["items"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"offset": -1},
        {"limit": "viele"},
        {"date_from": "2024-02-30"},
        {"date_from": "01.01.2024"},
        {"date_to": "2024-1-1"},
        {"date_to": "2024-01-01T00:00:00"},
        {"practitioner": "anna"},
        {"practitioner": 0},
        {"specialty": "x" * 61},
        {"offset": 2**63},
    ],
)
def test_bad_search_parameters_are_422(api_client, query):
    response = api_client.get("/api/slots", query)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]


@pytest.mark.parametrize("limit", [1, 50])
@pytest.mark.parametrize(
    ("filters", "queries"),
    [
        ({}, 2),  # the (capped) count and the page, joined
        # and before them the specialty's id and the city's clinics, which the two then name
        ({"specialty": "kardiologie", "city": "hamburg"}, 4),
    ],
)
def test_a_page_costs_the_same_queries_whatever_its_size(
    api_client, clinic, limit, filters, queries, django_assert_num_queries
):
    for number in range(90):
        practitioner = practitioner_create(
            clinic=clinic if number % 2 else ClinicFactory(city="Hamburg"),
            specialties=("kardiologie",) if number % 3 else ("dermatologie",),
        )
        slot_create(
            practitioner=practitioner,
            specialty_slug="kardiologie" if number % 3 else "dermatologie",
            starts_at=days_ahead(3, 8) + datetime.timedelta(minutes=number),
        )

    with django_assert_num_queries(queries):
        body = search(api_client, limit=limit, **filters)

    if filters:
        assert body["count"] == 30  # even numbers (Hamburg) not divisible by three (kardiologie)
        assert len(body["items"]) == min(limit, 30)
        assert {item["clinic"]["city"] for item in body["items"]} == {"Hamburg"}
        assert {item["specialty"]["slug"] for item in body["items"]} == {"kardiologie"}
    else:
        assert len(body["items"]) == limit
        assert {item["clinic"]["city"] for item in body["items"]} <= {"Berlin", "Hamburg"}


# --- Slots created by a clinic admin ---------------------------------------------------------


@pytest.fixture
def admin(clinic):
    return staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)


def create_slots(api_client, user, body: dict):
    return post_json(api_client, "/api/medical/slots", body, token_for(user))


def slot_body(clinic, practitioner, **fields) -> dict:
    specialty_get("allgemeinmedizin")
    return {
        "clinic": clinic.pk,
        "practitioner": practitioner.pk,
        "specialty": "allgemeinmedizin",
        **fields,
    }


def single(starts_at: datetime.datetime, minutes: int = 30, offset_hours: float = 2) -> dict:
    """A single slot's times written with an arbitrary UTC offset, as a client may send them."""
    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    return {
        "starts_at": starts_at.astimezone(zone).isoformat(),
        "ends_at": (starts_at + datetime.timedelta(minutes=minutes)).astimezone(zone).isoformat(),
    }


def test_a_clinic_admin_creates_one_slot_with_offset_times(api_client, admin, clinic, doctor):
    starts_at = days_ahead(10, 10)

    response = create_slots(
        api_client, admin, slot_body(clinic, doctor, **single(starts_at, offset_hours=5.5))
    )

    assert response.status_code == 201
    (created,) = response.json()
    slot = Slot.objects.get()
    assert created["id"] == slot.public_id
    assert (slot.starts_at, slot.ends_at) == (
        starts_at,
        starts_at + datetime.timedelta(minutes=30),
    )
    assert (slot.clinic, slot.practitioner, slot.is_booked) == (clinic, doctor, False)
    assert created["practitioner"]["id"] == doctor.pk
    event = AuditEvent.objects.get(action=AuditAction.SLOTS_CREATE)
    assert (event.actor_id, event.clinic_id) == (admin.pk, clinic.pk)
    assert event.details == {"count": 1, "practitioner": doctor.pk}


def test_a_series_follows_the_dates_weekdays_and_hours(api_client, admin, clinic, doctor):
    today = timezone.localdate()
    monday = today + datetime.timedelta(days=7 - today.weekday() + 7)

    response = create_slots(
        api_client,
        admin,
        slot_body(
            clinic,
            doctor,
            date_from=monday.isoformat(),
            date_to=(monday + datetime.timedelta(days=6)).isoformat(),
            start_time="09:00",
            end_time="10:00",
            slot_minutes=20,
            weekdays=[Weekday.MONDAY, Weekday.WEDNESDAY],
        ),
    )

    assert response.status_code == 201
    local_starts = [
        timezone.localtime(slot.starts_at).strftime("%a %H:%M")
        for slot in Slot.objects.order_by("starts_at")
    ]
    assert local_starts == [
        "Mon 09:00",
        "Mon 09:20",
        "Mon 09:40",
        "Wed 09:00",
        "Wed 09:20",
        "Wed 09:40",
    ]
    assert [item["id"] for item in response.json()] == [
        slot.public_id for slot in Slot.objects.order_by("starts_at")
    ]


@time_machine.travel(datetime.datetime(2027, 3, 1, 12, 0, tzinfo=UTC), tick=False)
def test_a_series_across_the_change_to_summer_time_keeps_9_oclock(
    api_client, admin, clinic, doctor
):
    response = create_slots(
        api_client,
        admin,
        slot_body(
            clinic,
            doctor,
            date_from="2027-03-26",
            date_to="2027-03-29",
            start_time="09:00",
            end_time="09:20",
            weekdays=list(range(7)),
        ),
    )

    assert response.status_code == 201
    slots = Slot.objects.order_by("starts_at")
    assert [timezone.localtime(s.starts_at).strftime("%d %H:%M") for s in slots] == [
        "26 09:00",
        "27 09:00",
        "28 09:00",
        "29 09:00",
    ]
    assert [s.starts_at.astimezone(UTC).hour for s in slots] == [8, 8, 7, 7]
    assert {s.ends_at - s.starts_at for s in slots} == {datetime.timedelta(minutes=20)}


@time_machine.travel(datetime.datetime(2027, 3, 1, 12, 0, tzinfo=UTC), tick=False)
def test_a_series_through_the_skipped_night_hour_is_created(api_client, admin, clinic, doctor):
    response = create_slots(
        api_client,
        admin,
        slot_body(
            clinic,
            doctor,
            date_from="2027-03-28",
            date_to="2027-03-28",
            start_time="01:00",
            end_time="04:00",
            slot_minutes=30,
            weekdays=[Weekday.SUNDAY],
        ),
    )

    assert response.status_code == 201
    assert len(response.json()) == 4  # 02:00 to 03:00 does not exist that night


def test_a_slot_overlapping_an_existing_one_is_409_and_nothing_is_created(
    api_client, admin, clinic, doctor
):
    existing = slot_create(practitioner=doctor, starts_at=days_ahead(10, 10))
    day = timezone.localtime(existing.starts_at).date().isoformat()

    overlapping = [
        single(existing.starts_at + datetime.timedelta(minutes=10)),
        single(existing.starts_at - datetime.timedelta(minutes=20), minutes=60),
        # The series' 10:00-10:30 overlaps 10:00-10:20 (an exact repeat would be skipped).
        {
            "date_from": day,
            "date_to": day,
            "start_time": "09:00",
            "end_time": "11:00",
            "slot_minutes": 30,
            "weekdays": list(range(7)),
        },
    ]
    for times in overlapping:
        response = create_slots(api_client, admin, slot_body(clinic, doctor, **times))
        assert response.status_code == 409, times
        assert response.json()["code"] == "slot_overlaps"

    assert list(Slot.objects.all()) == [existing]
    assert not AuditEvent.objects.filter(action=AuditAction.SLOTS_CREATE).exists()


def test_an_adjacent_slot_is_fine_and_an_exact_repeat_makes_no_second_slot(
    api_client, admin, clinic, doctor
):
    starts_at = days_ahead(10, 10)
    create_slots(api_client, admin, slot_body(clinic, doctor, **single(starts_at)))

    adjacent = create_slots(
        api_client,
        admin,
        slot_body(clinic, doctor, **single(starts_at + datetime.timedelta(minutes=30))),
    )
    repeat = create_slots(api_client, admin, slot_body(clinic, doctor, **single(starts_at)))

    assert adjacent.status_code == 201
    assert repeat.status_code in (201, 409)
    assert Slot.objects.count() == 2


def test_a_practitioner_of_another_clinic_is_422(api_client, admin, clinic):
    stranger = practitioner_create(clinic=ClinicFactory())
    not_a_practitioner = staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)

    for person in (stranger, not_a_practitioner):
        response = create_slots(
            api_client, admin, slot_body(clinic, person, **single(days_ahead(10, 10)))
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "practitioner"
    assert not Slot.objects.exists()


def test_an_admin_of_another_clinic_gets_404(api_client, clinic, doctor):
    stranger = staff_create(clinic=ClinicFactory(), role=Role.CLINIC_ADMIN)

    response = create_slots(
        api_client, stranger, slot_body(clinic, doctor, **single(days_ahead(10, 10)))
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Slot.objects.exists()


def test_an_unknown_clinic_is_404(api_client, admin, clinic, doctor):
    body = slot_body(clinic, doctor, **single(days_ahead(10, 10)))

    response = create_slots(api_client, admin, {**body, "clinic": clinic.pk + 1000})

    assert response.status_code == 404


def test_patients_and_practitioners_cannot_create_slots(api_client, clinic, doctor, patient):
    body = slot_body(clinic, doctor, **single(days_ahead(10, 10)))

    for token in (patient, token_for(doctor)):
        response = post_json(api_client, "/api/medical/slots", body, token)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    assert not Slot.objects.exists()


@pytest.mark.parametrize(
    "times",
    [
        pytest.param(lambda: single(timezone.now() - datetime.timedelta(hours=1)), id="past"),
        pytest.param(
            lambda: {"starts_at": "2030-05-06T10:00:00", "ends_at": "2030-05-06T10:30:00"},
            id="no offset",
        ),
        pytest.param(
            lambda: {
                "starts_at": "2030-05-06T10:30:00+02:00",
                "ends_at": "2030-05-06T10:00:00+02:00",
            },
            id="backwards",
        ),
        pytest.param(lambda: {"starts_at": "2030-05-06T10:00:00+02:00"}, id="no end"),
        pytest.param(
            lambda: {
                **single(days_ahead(10, 10)),
                "date_from": "2030-05-06",
                "date_to": "2030-05-06",
                "start_time": "09:00",
                "end_time": "10:00",
            },
            id="both single and series",
        ),
        pytest.param(
            lambda: {
                "date_from": "2030-05-06",
                "date_to": "2030-05-05",
                "start_time": "09:00",
                "end_time": "10:00",
            },
            id="series backwards",
        ),
        pytest.param(
            lambda: {
                "date_from": "2030-05-06",
                "date_to": "2031-06-06",
                "start_time": "09:00",
                "end_time": "10:00",
            },
            id="series over a year",
        ),
        pytest.param(
            lambda: {
                "date_from": "2030-05-06",
                "date_to": "2030-05-06",
                "start_time": "09:00",
                "end_time": "10:00",
                "weekdays": [7],
            },
            id="weekday 7",
        ),
        pytest.param(
            lambda: {**single(days_ahead(10, 10)), "slot_minutes": 2},
            id="slot of 2 minutes",
        ),
    ],
)
def test_invalid_slot_times_are_422(api_client, admin, clinic, doctor, times):
    response = create_slots(api_client, admin, slot_body(clinic, doctor, **times()))

    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error"
    assert not Slot.objects.exists()


def test_an_unknown_specialty_is_422(api_client, admin, clinic, doctor):
    body = slot_body(clinic, doctor, **single(days_ahead(10, 10)))

    response = create_slots(api_client, admin, {**body, "specialty": "zauberei"})

    assert response.status_code == 422
    assert not Slot.objects.exists()


# --- generate_slots --------------------------------------------------------------------------

# A Sunday noon in Berlin, a week before summer time begins.
SUNDAY_BEFORE = datetime.datetime(2027, 3, 21, 11, 0, tzinfo=UTC)


@pytest.fixture
def mondays(doctor):
    """The doctor sees patients on Monday mornings, 09:00 to 11:00, in 30-minute slots."""
    return OpeningHours.objects.create(
        membership=membership_of(doctor),
        weekday=Weekday.MONDAY,
        start_time=datetime.time(9, 0),
        end_time=datetime.time(11, 0),
        slot_minutes=30,
        specialty=specialty_get("allgemeinmedizin"),
    )


def generate(days: int = 14) -> str:
    out = StringIO()
    call_command("generate_slots", "--days", str(days), stdout=out)
    return out.getvalue()


def local_starts() -> list[str]:
    return [
        timezone.localtime(slot.starts_at).strftime("%m-%d %H:%M")
        for slot in Slot.objects.order_by("starts_at")
    ]


@time_machine.travel(SUNDAY_BEFORE, tick=False)
def test_generate_slots_follows_opening_hours_and_skips_absences(mondays, doctor):
    Absence.objects.create(
        membership=membership_of(doctor),
        starts_at=local(2027, 3, 29, 10, 15),
        ends_at=local(2027, 3, 29, 12, 0),
    )

    output = generate(days=14)

    assert "6 " in output
    assert local_starts() == [
        "03-22 09:00",
        "03-22 09:30",
        "03-22 10:00",
        "03-22 10:30",
        "03-29 09:00",
        "03-29 09:30",  # 10:00 and 10:30 touch the absence from 10:15
    ]
    slots = Slot.objects.order_by("starts_at")
    assert {slot.specialty.slug for slot in slots} == {"allgemeinmedizin"}
    assert {slot.clinic for slot in slots} == {membership_of(doctor).clinic}
    # Summer time began on the 28th: the same 09:00 is an hour earlier in UTC.
    assert [slot.starts_at.astimezone(UTC).hour for slot in slots[::4]] == [8, 7]


@time_machine.travel(SUNDAY_BEFORE, tick=False)
def test_a_second_run_creates_nothing_and_a_longer_horizon_only_the_new_days(mondays):
    generate(days=14)

    assert "0 " in generate(days=14)
    assert Slot.objects.count() == 8
    generate(days=21)
    assert Slot.objects.count() == 12


@time_machine.travel(datetime.datetime(2027, 3, 22, 8, 45, tzinfo=UTC), tick=False)
def test_generate_slots_makes_no_past_slots(mondays):
    generate(days=1)  # Monday, 09:45 in Berlin

    assert local_starts() == ["03-22 10:00", "03-22 10:30"]


@time_machine.travel(SUNDAY_BEFORE, tick=False)
def test_generate_slots_leaves_room_for_slots_made_by_hand(mondays, doctor, clinic):
    """A longer slot an admin made on a Monday morning is kept; the run fills around it and
    goes on with everyone else's hours."""
    by_hand = slot_create(practitioner=doctor, starts_at=local(2027, 3, 22, 9, 15), minutes=45)
    colleague = practitioner_create(clinic=clinic)
    OpeningHours.objects.create(
        membership=membership_of(colleague),
        weekday=Weekday.MONDAY,
        start_time=datetime.time(9, 0),
        end_time=datetime.time(10, 0),
        slot_minutes=30,
        specialty=specialty_get("allgemeinmedizin"),
    )

    generate(days=7)

    assert Slot.objects.filter(pk=by_hand.pk).exists()
    mine = Slot.objects.filter(practitioner=doctor).order_by("starts_at")
    assert [timezone.localtime(s.starts_at).strftime("%H:%M") for s in mine] == [
        "09:15",
        "10:00",
        "10:30",
    ]
    assert Slot.objects.filter(practitioner=colleague).count() == 2


@pytest.mark.parametrize("days", ["0", "367"])
def test_generate_slots_refuses_a_horizon_out_of_range(days):
    with pytest.raises(CommandError):
        call_command("generate_slots", "--days", days, stdout=StringIO())


@pytest.mark.parametrize(
    "times",
    [
        {"starts_at": "9999-12-31T23:10:00-01:00", "ends_at": "9999-12-31T23:30:00-01:00"},
        {
            "date_from": "0001-01-01",
            "date_to": "0001-01-01",
            "start_time": "00:10",
            "end_time": "01:00",
        },
        {
            "date_from": "9999-12-31",
            "date_to": "9999-12-31",
            "start_time": "23:00",
            "end_time": "23:59",
        },
    ],
)
def test_slot_dates_at_the_ends_of_the_calendar_are_422_not_500(
    api_client, admin, clinic, doctor, times
):
    # Found by schemathesis: slot times near datetime's limits overflowed into a 500.
    body = slot_body(clinic, doctor, weekdays=[0, 1, 2, 3, 4, 5, 6], **times)

    response = create_slots(api_client, admin, body)

    assert response.status_code == 422, response.content[:300]
    assert response.json()["code"] == "validation_error"
    assert not Slot.objects.exists()
