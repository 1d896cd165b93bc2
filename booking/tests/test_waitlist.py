"""The waitlist as patients use it over HTTP: joining, offers when a slot becomes free (a
cancellation, new slots), the hold that keeps everyone else out, confirming, declining, expiry
passing the slot on in order of joining, and what the e-mails hold."""

import datetime
import json
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from accounts.tests.factories import ClinicFactory
from audit.models import AuditAction, AuditEvent
from audit.services import subject_pseudonym
from booking.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    Slot,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistStatus,
)
from booking.outbox import mails_send
from booking.services import appointment_book, appointment_cancel, erasure_request
from booking.tests.factories import (
    bearer,
    book,
    days_ahead,
    post_json,
    practitioner_create,
    slot_create,
    staff_create,
    token_for,
)
from booking.waitlist import offer_url

pytestmark = pytest.mark.django_db

REASON = "Zqxgrund Herzrasen nachts"
HOLD = datetime.timedelta(minutes=30)


def error(response) -> tuple[int, str]:
    body = response.json()
    assert body["detail"]
    return response.status_code, body["code"]


def join(client, token, **body):
    return post_json(client, "/api/waitlist", {"specialty": "allgemeinmedizin", **body}, token)


def joined(client, token, **body) -> dict:
    response = join(client, token, **body)
    assert response.status_code == 201, response.content
    return response.json()


def listed(client, token) -> list[dict]:
    response = client.get("/api/waitlist", **bearer(token))
    assert response.status_code == 200
    return response.json()["items"]


def free_ids(client, **filters) -> list[str]:
    response = client.get("/api/slots", {"limit": 200, **filters})
    return [slot["id"] for slot in response.json()["items"]]


def open_offer(patient) -> WaitlistOffer | None:
    return WaitlistOffer.objects.filter(entry__patient=patient, status=OfferStatus.OPEN).first()


def confirm(client, token, offer_id, **body):
    url = f"/api/waitlist/offers/{offer_id}/confirm"
    return post_json(client, url, body, token)


@pytest.fixture
def process_waitlist(django_capture_on_commit_callbacks):
    """Run `manage.py process_waitlist` (and the e-mails it sends after commit); its output."""

    def run() -> str:
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("process_waitlist", stdout=out)
        return out.getvalue()

    return run


@pytest.fixture
def freed(api_client, slot, make_patient, django_capture_on_commit_callbacks):
    """Cancel a booked appointment on `slot`: returns a function that frees it now (and sends
    the e-mails that follow the commit)."""
    owner = make_patient()
    appointment = appointment_book(patient=owner.user, slot_id=slot.public_id, reason=REASON)

    def free():
        with django_capture_on_commit_callbacks(execute=True):
            appointment_cancel(actor=owner.user, appointment_id=appointment.pk)
        # The owner's own cancellation e-mail (booking/tests/test_api.py checks it), sent by the
        # outbox's sender: the tests here look at the waitlist's e-mails only.
        mails_send()
        (cancellation,) = [sent for sent in mail.outbox if sent.to == [owner.user.email]]
        mail.outbox.remove(cancellation)
        slot.refresh_from_db()
        return slot

    return free


# --- Joining ---------------------------------------------------------------------------------


def test_a_patient_joins_a_waitlist_and_sees_it(api_client, patient, clinic, doctor):
    body = joined(
        api_client,
        patient,
        city="berlin",
        clinic=clinic.pk,
        practitioner=doctor.pk,
        date_from="2030-01-01",
        date_to="2030-02-01",
    )

    assert body["status"] == "waiting"
    assert body["specialty"]["slug"] == "allgemeinmedizin"
    assert body["clinic"] == {"id": clinic.pk, "name": clinic.name, "city": "Berlin"}
    assert body["practitioner"] == {"id": doctor.pk, "name": "Anna Berger"}
    assert (body["date_from"], body["date_to"]) == ("2030-01-01", "2030-02-01")
    assert body["offer"] is None
    assert [entry["id"] for entry in listed(api_client, patient)] == [body["id"]]
    event = AuditEvent.objects.get(action=AuditAction.WAITLIST_JOIN)
    assert (event.actor_id, event.object_id) == (patient.user.pk, body["id"])
    assert event.subject_ref == subject_pseudonym(patient.user.pk)
    assert event.details == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"specialty": "zauberei"}, "specialty"),
        ({"clinic": 999_999}, "clinic"),
        ({"practitioner": 999_999}, "practitioner"),
        ({"date_from": "2030-02-02", "date_to": "2030-02-01"}, "date_to"),
        ({"date_to": "2020-01-01"}, "date_to"),
        ({"date_from": "01.02.2030"}, "date_from"),
        ({"specialty": "x" * 61}, "specialty"),
    ],
)
def test_bad_waitlist_entries_are_422_naming_the_field(api_client, patient, body, field):
    response = join(api_client, patient, **body)

    assert error(response) == (422, "validation_error")
    assert field in {item["field"] for item in response.json()["errors"]}
    assert not WaitlistEntry.objects.exists()


def test_only_patients_join_and_anonymous_is_401(api_client, clinic):
    practitioner = token_for(practitioner_create(clinic=clinic))
    assert error(join(api_client, practitioner)) == (403, "not_a_patient")
    assert error(post_json(api_client, "/api/waitlist", {"specialty": "x"})) == (
        401,
        "not_authenticated",
    )


def test_a_patient_waits_on_at_most_the_configured_number_of_lists(
    api_client, patient, settings, doctor
):
    settings.PATTERM_WAITLIST_MAX_ENTRIES = 2
    first = joined(api_client, patient)
    joined(api_client, patient)

    assert error(join(api_client, patient)) == (409, "waitlist_limit")
    assert api_client.delete(f"/api/waitlist/{first['id']}", **bearer(patient)).status_code == 204
    assert join(api_client, patient).status_code == 201


def test_leaving_works_once_and_someone_elses_entry_is_404(
    api_client, patient, make_patient, doctor
):
    entry = joined(api_client, patient)
    url = f"/api/waitlist/{entry['id']}"

    assert error(api_client.delete(url, **bearer(make_patient()))) == (404, "not_found")
    assert api_client.delete(url, **bearer(patient)).status_code == 204
    assert error(api_client.delete(url, **bearer(patient))) == (404, "not_found")
    assert listed(api_client, patient) == []
    assert WaitlistEntry.objects.get(pk=entry["id"]).status == WaitlistStatus.LEFT
    event = AuditEvent.objects.get(action=AuditAction.WAITLIST_LEAVE)
    assert (event.object_id, event.details) == (entry["id"], {"by": "patient"})


def test_the_list_takes_the_same_queries_for_one_entry_and_for_ten(
    api_client, make_patient, doctor
):
    def queries_for(entries: int) -> int:
        issued = make_patient()
        for _ in range(entries):
            joined(api_client, issued, practitioner=doctor.pk)
        # Give every entry an open offer, the way a cancellation would.
        for entry in WaitlistEntry.objects.filter(patient=issued.user):
            slot = slot_create(practitioner=doctor)
            Slot.objects.filter(pk=slot.pk).update(
                held_for=issued.user, held_until=timezone.now() + HOLD
            )
            WaitlistOffer.objects.create(entry=entry, slot=slot, expires_at=timezone.now() + HOLD)
        with CaptureQueriesContext(connection) as queries:
            items = listed(api_client, issued)
        assert len(items) == entries
        assert all(item["offer"]["slot"]["practitioner"]["id"] == doctor.pk for item in items)
        return len(queries)

    assert queries_for(1) == queries_for(10)


# --- A cancellation: the offer, the hold, the confirmation -----------------------------------


def test_a_cancelled_slot_is_offered_to_the_first_patient_waiting_and_held_for_them(
    api_client, slot, freed, make_patient, mailoutbox, clinic
):
    first, second = make_patient(), make_patient()
    joined(api_client, first)
    joined(api_client, second)
    mailoutbox.clear()

    freed()

    offer = open_offer(first.user)
    assert offer is not None and offer.slot == slot
    assert open_offer(second.user) is None
    slot.refresh_from_db()
    assert (slot.is_booked, slot.held_for) == (False, first.user)
    assert slot.held_until == offer.expires_at
    # Held: not in search, and not bookable by anyone else, the second in line included.
    assert slot.public_id not in free_ids(api_client)
    for outsider in (second, make_patient()):
        assert error(book(api_client, outsider, slot)) == (409, "slot_taken")
    # The offer e-mail: to the first patient only, with the time, clinic, address and the link.
    (mail,) = mailoutbox
    assert mail.to == [first.user.email]
    assert clinic.name in mail.body and clinic.address in mail.body
    assert offer_url(offer) in mail.body
    assert timezone.localtime(slot.starts_at).strftime("%d.%m.%Y") in mail.body
    for private in ("Erika", "Mustermann", "1984", REASON, "Zqxgrund"):
        assert private not in mail.body and private not in mail.subject
    entries = listed(api_client, first)
    assert entries[0]["status"] == "offered"
    assert entries[0]["offer"]["id"] == str(offer.pk)
    assert entries[0]["offer"]["slot"]["id"] == slot.public_id


def test_confirming_books_the_held_slot_through_booking(
    api_client, slot, freed, make_patient, mailoutbox
):
    waiting = make_patient()
    entry = joined(api_client, waiting)
    freed()
    offer = open_offer(waiting.user)

    response = confirm(api_client, waiting, offer.pk, reason="Kontrolle")

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["slot"]["id"], body["reason"]) == (
        "booked",
        slot.public_id,
        "Kontrolle",
    )
    offer.refresh_from_db()
    assert offer.status == OfferStatus.CONFIRMED
    assert str(offer.appointment_id) == body["id"]
    assert WaitlistEntry.objects.get(pk=entry["id"]).status == WaitlistStatus.BOOKED
    slot.refresh_from_db()
    assert (slot.is_booked, slot.held_for, slot.held_until) == (True, None, None)
    booked = Appointment.objects.filter(slot=slot, status=AppointmentStatus.BOOKED)
    assert [a.patient for a in booked] == [waiting.user]
    assert listed(api_client, waiting) == []  # booked: no longer waiting
    assert error(confirm(api_client, waiting, offer.pk)) == (409, "offer_closed")
    actions = list(
        AuditEvent.objects.filter(action__startswith="waitlist.").values_list("action", flat=True)
    )
    assert actions == [
        AuditAction.WAITLIST_JOIN,
        AuditAction.WAITLIST_OFFER,
        AuditAction.WAITLIST_OFFER_CONFIRM,
    ]


def test_the_holder_may_also_book_the_held_slot_directly(api_client, slot, freed, make_patient):
    waiting = make_patient()
    joined(api_client, waiting)
    freed()
    offer = open_offer(waiting.user)

    assert book(api_client, waiting, slot).status_code == 201

    offer.refresh_from_db()
    assert offer.status == OfferStatus.CONFIRMED


def test_a_patient_cannot_see_confirm_or_decline_someone_elses_offer(
    api_client, slot, freed, make_patient
):
    waiting, other = make_patient(), make_patient()
    joined(api_client, waiting)
    joined(api_client, other)
    freed()
    offer = open_offer(waiting.user)
    base = f"/api/waitlist/offers/{offer.pk}"

    assert error(api_client.get(base, **bearer(other))) == (404, "not_found")
    assert error(confirm(api_client, other, offer.pk)) == (404, "not_found")
    assert error(post_json(api_client, f"{base}/decline", {}, other)) == (404, "not_found")
    staff = token_for(staff_create(clinic=slot.clinic, role=Role.CLINIC_ADMIN))
    # Staff may never confirm an offer: 403 by role, the same for every id (issue 18).
    assert error(confirm(api_client, staff, offer.pk)) == (403, "not_a_patient")

    offer.refresh_from_db()
    assert offer.status == OfferStatus.OPEN
    assert not Appointment.objects.filter(slot=slot, status=AppointmentStatus.BOOKED).exists()
    assert api_client.get(base, **bearer(waiting)).json()["status"] == "open"


def test_only_matching_entries_get_the_offer(api_client, clinic, doctor, make_patient):
    hamburg = ClinicFactory(city="Hamburg")
    other_doctor = practitioner_create(clinic=clinic)
    slot = slot_create(practitioner=doctor, starts_at=days_ahead(10, 9))
    day = timezone.localtime(slot.starts_at).date()
    not_matching = {
        "another specialty": {"specialty": "dermatologie"},
        "another city": {"city": "Hamburg"},
        "another clinic": {"clinic": hamburg.pk},
        "another practitioner": {"practitioner": other_doctor.pk},
        "days after": {"date_from": str(day + datetime.timedelta(days=1))},
        "days before": {"date_to": str(day - datetime.timedelta(days=1))},
    }
    from booking.tests.factories import specialty_get

    specialty_get("dermatologie")
    for body in not_matching.values():
        joined(api_client, make_patient(), **body)
    busy = make_patient()  # has another appointment at that very time
    joined(api_client, busy)
    elsewhere = slot_create(starts_at=slot.starts_at)
    appointment_book(patient=busy.user, slot_id=elsewhere.public_id)
    matching = make_patient()
    joined(api_client, matching, city="BERLIN", clinic=clinic.pk, date_to=str(day))
    owner = make_patient()
    booked = appointment_book(patient=owner.user, slot_id=slot.public_id)

    appointment_cancel(actor=owner.user, appointment_id=booked.pk)

    assert [offer.entry.patient for offer in WaitlistOffer.objects.all()] == [matching.user]


def test_a_slot_starting_within_the_hold_is_not_offered_but_free(
    api_client, doctor, make_patient, clinic
):
    soon = slot_create(practitioner=doctor, starts_at=timezone.now() + datetime.timedelta(hours=3))
    clinic.cancellation_cutoff_hours = 0
    clinic.save()
    owner = make_patient()
    appointment = appointment_book(patient=owner.user, slot_id=soon.public_id)
    joined(api_client, make_patient())

    with time_machine.travel(soon.starts_at - datetime.timedelta(minutes=20), tick=False):
        appointment_cancel(actor=owner.user, appointment_id=appointment.pk)
        assert soon.public_id in free_ids(api_client)

    assert not WaitlistOffer.objects.exists()


def test_the_patient_who_cancels_is_not_offered_their_own_slot(api_client, slot, make_patient):
    owner, other = make_patient(), make_patient()
    appointment = appointment_book(patient=owner.user, slot_id=slot.public_id)
    joined(api_client, owner)  # waits for an earlier one, say
    joined(api_client, other)

    appointment_cancel(actor=owner.user, appointment_id=appointment.pk)

    assert open_offer(owner.user) is None
    assert open_offer(other.user).slot == slot


def test_with_nobody_waiting_a_cancelled_slot_is_free_again(api_client, slot, freed):
    freed()

    assert slot.public_id in free_ids(api_client)
    assert slot.held_for is None
    assert not WaitlistOffer.objects.exists()


# --- Expiry and declining pass the slot on in order ------------------------------------------


def test_expiry_passes_the_slot_on_in_order_of_joining_then_frees_it(
    api_client, slot, freed, make_patient, mailoutbox, process_waitlist
):
    first, second, third = make_patient(), make_patient(), make_patient()
    for issued in (first, second, third):
        joined(api_client, issued)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        freed()
        offers = [open_offer(first.user)]
        assert offers[0] is not None

        for number, expected in enumerate((second, third), start=1):
            clock.shift(HOLD - datetime.timedelta(seconds=1))
            assert "0 offers expired" in process_waitlist()  # not yet
            clock.shift(datetime.timedelta(seconds=1))
            assert "1 offers expired: 1 slots offered" in process_waitlist()
            offers.append(open_offer(expected.user))
            assert offers[number] is not None and offers[number].slot == slot
            slot.refresh_from_db()
            assert slot.held_for == expected.user
            assert slot.public_id not in free_ids(api_client)

        clock.shift(HOLD)
        assert "1 offers expired: 0 slots offered to the next patient waiting, 1 back" in (
            process_waitlist()
        )

        slot.refresh_from_db()
        assert (slot.held_for, slot.held_until, slot.is_booked) == (None, None, False)
        assert slot.public_id in free_ids(api_client)
        for offer in offers:
            offer.refresh_from_db()
        assert [offer.status for offer in offers] == [OfferStatus.EXPIRED] * 3
        assert [offer.entry.patient for offer in offers] == [first.user, second.user, third.user]
        # Each stays on the waitlist, and may confirm nothing of the expired offer.
        token = token_for(first.user)  # the first token's idle time is over
        assert listed(api_client, token)[0]["status"] == "waiting"
        assert error(confirm(api_client, token, offers[0].pk)) == (409, "offer_expired")
    assert [mail.to for mail in mailoutbox[-3:]] == [
        [first.user.email],
        [second.user.email],
        [third.user.email],
    ]
    expired = AuditEvent.objects.filter(action=AuditAction.WAITLIST_OFFER_EXPIRE)
    assert [event.object_id for event in expired] == [str(offer.pk) for offer in offers]
    assert all(event.actor_id is None for event in expired)


def test_an_ended_hold_is_passed_on_when_the_slot_is_next_touched(
    api_client, slot, freed, make_patient
):
    first, second = make_patient(), make_patient()
    joined(api_client, first)
    joined(api_client, second)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        freed()
        clock.shift(HOLD + datetime.timedelta(minutes=1))

        # No command ran: an outsider's booking attempt processes the hold first.
        assert error(book(api_client, make_patient(), slot)) == (409, "slot_taken")
        assert open_offer(second.user).slot == slot

        clock.shift(HOLD + datetime.timedelta(minutes=1))
        # The second patient's late confirmation fails; the slot returns to search.
        second_offer = WaitlistOffer.objects.get(entry__patient=second.user)
        token = token_for(second.user)
        assert error(confirm(api_client, token, second_offer.pk)) == (409, "offer_expired")
        late = make_patient()
        assert book(api_client, late, slot).status_code == 201


def test_declining_passes_the_slot_on_and_the_patient_keeps_waiting(
    api_client, slot, freed, make_patient
):
    first, second = make_patient(), make_patient()
    entry = joined(api_client, first)
    joined(api_client, second)
    freed()
    offer = open_offer(first.user)

    response = post_json(api_client, f"/api/waitlist/offers/{offer.pk}/decline", {}, first)

    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert open_offer(second.user).slot == slot
    assert listed(api_client, first)[0] == {**listed(api_client, first)[0], "id": entry["id"]}
    assert listed(api_client, first)[0]["status"] == "waiting"
    assert error(post_json(api_client, f"/api/waitlist/offers/{offer.pk}/decline", {}, first)) == (
        409,
        "offer_closed",
    )
    event = AuditEvent.objects.get(action=AuditAction.WAITLIST_OFFER_DECLINE)
    assert event.details == {"slot": slot.public_id, "by": "patient"}


def test_leaving_with_an_open_offer_passes_the_slot_on(api_client, slot, freed, make_patient):
    first, second = make_patient(), make_patient()
    entry = joined(api_client, first)
    joined(api_client, second)
    freed()

    assert api_client.delete(f"/api/waitlist/{entry['id']}", **bearer(first)).status_code == 204

    assert open_offer(first.user) is None
    assert open_offer(second.user).slot == slot


def test_an_erasure_request_leaves_every_waitlist_and_passes_offers_on(
    api_client, slot, freed, make_patient
):
    first, second = make_patient(), make_patient()
    joined(api_client, first)
    joined(api_client, first, city="Berlin")
    joined(api_client, second)
    freed()

    erasure_request(patient=first.user)

    assert not WaitlistEntry.objects.filter(
        patient=first.user, status__in=["waiting", "offered"]
    ).exists()
    assert open_offer(second.user).slot == slot


# --- New slots -------------------------------------------------------------------------------


def test_new_slots_are_offered_to_waiting_patients_earliest_first(
    api_client, clinic, doctor, make_patient
):
    first, second, third = make_patient(), make_patient(), make_patient()
    joined(api_client, first)
    joined(api_client, second, city="Hamburg")  # nothing for them
    joined(api_client, third)
    admin = token_for(staff_create(clinic=clinic, role=Role.CLINIC_ADMIN))
    day = (timezone.localdate() + datetime.timedelta(days=9)).isoformat()
    series = {
        "clinic": clinic.pk,
        "practitioner": doctor.pk,
        "specialty": "allgemeinmedizin",
        "date_from": day,
        "date_to": day,
        "start_time": "09:00",
        "end_time": "10:00",
        "weekdays": list(range(7)),
    }

    response = post_json(api_client, "/api/medical/slots", series, admin)

    assert response.status_code == 201
    created = [item["id"] for item in response.json()]
    assert len(created) == 3
    assert open_offer(first.user).slot.public_id == created[0]
    assert open_offer(third.user).slot.public_id == created[1]
    assert open_offer(second.user) is None
    assert free_ids(api_client) == [created[2]]


def test_generate_slots_offers_the_new_slots(api_client, doctor, make_patient):
    from booking.models import OpeningHours
    from booking.tests.factories import membership_of, specialty_get

    waiting = make_patient()
    joined(api_client, waiting, practitioner=doctor.pk)
    OpeningHours.objects.create(
        membership=membership_of(doctor),
        weekday=(timezone.localdate() + datetime.timedelta(days=2)).weekday(),
        start_time=datetime.time(9),
        end_time=datetime.time(10),
        specialty=specialty_get(),
    )

    call_command("generate_slots", "--days", "7", stdout=StringIO())

    offer = open_offer(waiting.user)
    assert offer is not None
    first = Slot.objects.filter(practitioner=doctor).order_by("starts_at").first()
    assert offer.slot == first


# --- Commands ----------------------------------------------------------------------------------


def test_process_waitlist_dry_run_changes_nothing(api_client, slot, freed, make_patient):
    joined(api_client, make_patient())
    with time_machine.travel(timezone.now(), tick=False) as clock:
        freed()
        clock.shift(HOLD)
        out = StringIO()
        call_command("process_waitlist", "--dry-run", stdout=out)

    assert "1 offers have expired (dry run" in out.getvalue()
    assert WaitlistOffer.objects.get().status == OfferStatus.OPEN


def test_the_offer_api_shape(api_client, slot, freed, make_patient):
    waiting = make_patient()
    entry = joined(api_client, waiting)
    freed()
    offer = open_offer(waiting.user)

    body = api_client.get(f"/api/waitlist/offers/{offer.pk}", **bearer(waiting)).json()

    assert set(body) == {
        "id",
        "entry",
        "status",
        "slot",
        "offered_at",
        "expires_at",
        "decided_at",
    }
    assert (body["entry"], body["status"], body["slot"]["id"]) == (
        entry["id"],
        "open",
        slot.public_id,
    )
    assert json.loads(json.dumps(body))  # plain JSON
