"""SECURITY.md B1, B2 and B4, and the same race over HTTP: many bookings of one slot at once.

Real transactions, one connection per thread, started together by a barrier: an in-memory
database or a wrapping test transaction would hide the race. PostgreSQL runs them in its pass of
`make test`, the file SQLite database (BEGIN IMMEDIATE, busy timeout) in the SQLite pass.
"""

import random
import threading
from collections import Counter, defaultdict

import pytest
import requests
from django.db import connection
from django.db.models import Count, Q

from accounts.models import Role
from audit.models import AuditAction, AuditEvent
from booking.models import Appointment, AppointmentStatus, Slot
from booking.services import appointment_book, appointment_cancel
from booking.tests.factories import practitioner_create, slot_create, staff_create
from patterm.errors import Conflict
from vault.models import RecordCategory
from vault.services import record_entry_create

BOTH_DATABASES = pytest.mark.parametrize(
    "vendor",
    [
        pytest.param("postgresql", marks=pytest.mark.requires_postgresql),
        pytest.param("sqlite", marks=pytest.mark.requires_sqlite_file),
    ],
)

THREADS = 50  # SECURITY.md B1: 50 concurrent bookings of one slot, repeated on fresh slots
# SQLite serialises writers, and a waiting one polls for the lock with sleeps of up to 100 ms:
# a round of 50 takes about two seconds there (20 rounds: 44 s), against a third of a second on
# PostgreSQL. Five rounds (250 racing bookings) show the same thing in a tolerable time.
ROUNDS = {"postgresql": 20, "sqlite": 5}
JOIN_TIMEOUT = 120


def attempt_booking(patient, slot_id: str) -> tuple[str, Appointment | None]:
    """The outcome a client would see: "booked", a Conflict's code, or the unexpected error
    (a 500 in production: "database is locked", an IntegrityError, a deadlock)."""
    try:
        return "booked", appointment_book(patient=patient, slot_id=slot_id)
    except Conflict as conflict:
        return conflict.code, None
    except Exception as error:
        return f"{type(error).__name__}: {error}", None


def attempt_cancel(actor, appointment_id) -> str:
    try:
        appointment_cancel(actor=actor, appointment_id=appointment_id)
    except Conflict as conflict:
        return conflict.code
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "cancelled"


def run_together(targets: list, *, alongside=None) -> list[BaseException]:
    """Run each callable in its own thread with its own connection; the errors they raised.

    `alongside(stop)` runs in one more thread until the others are done and `stop` is set.
    """
    errors: list[BaseException] = []
    stop = threading.Event()

    def run(target):
        try:
            target()
        except BaseException as error:  # reported by the test, which runs in another thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    watcher = alongside and threading.Thread(target=run, args=(lambda: alongside(stop),))
    for thread in [*threads, *([watcher] if watcher else [])]:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    stop.set()
    if watcher:
        watcher.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "threads did not finish"
    return errors


def booked_per_slot(slots) -> dict[int, int]:
    counts = Counter(
        Appointment.objects.filter(slot__in=slots, status=AppointmentStatus.BOOKED).values_list(
            "slot_id", flat=True
        )
    )
    return {slot.pk: counts[slot.pk] for slot in slots}


def slots_out_of_step(slot_ids) -> list[int]:
    """Slots whose `is_booked` disagrees with their appointments, read in one statement."""
    return list(
        Slot.objects.filter(pk__in=slot_ids)
        .annotate(
            booked=Count("appointments", filter=Q(appointments__status=AppointmentStatus.BOOKED))
        )
        .filter(Q(is_booked=True, booked=0) | Q(is_booked=False, booked__gt=0) | Q(booked__gt=1))
        .values_list("pk", flat=True)
    )


# --- B1 (PostgreSQL) and B2 (file SQLite) ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_concurrent_bookings_of_one_slot_give_one_appointment_and_clean_conflicts(
    vendor, make_patient, sent_mails
):
    assert connection.vendor == vendor
    doctor = practitioner_create()
    patients = [make_patient().user for _ in range(THREADS)]
    slots = [slot_create(practitioner=doctor) for _ in range(ROUNDS[vendor])]
    barrier = threading.Barrier(THREADS)
    outcomes: dict[int, list[tuple[str, int]]] = defaultdict(list)

    def book_every_round(patient):
        def target():
            connection.ensure_connection()  # connected first; the rounds then start together
            for number, slot in enumerate(slots):
                try:
                    barrier.wait(timeout=60)
                except threading.BrokenBarrierError:
                    return
                outcome, _ = attempt_booking(patient, slot.public_id)
                outcomes[number].append((outcome, patient.pk))

        return target

    errors = run_together([book_every_round(patient) for patient in patients])

    assert errors == []
    winners = {}
    for number, slot in enumerate(slots):
        assert Counter(outcome for outcome, _ in outcomes[number]) == {
            "booked": 1,
            "slot_taken": THREADS - 1,
        }, f"round {number}"
        (winners[slot.pk],) = [pk for outcome, pk in outcomes[number] if outcome == "booked"]
    assert booked_per_slot(slots) == {slot.pk: 1 for slot in slots}
    # The losers left nothing behind: no appointment, no audit row, no e-mail.
    assert dict(Appointment.objects.values_list("slot_id", "patient_id")) == winners
    assert set(Slot.objects.filter(pk__in=winners).values_list("is_booked", flat=True)) == {True}
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_BOOK).count() == len(slots)
    emails_of = {patient.pk: patient.email for patient in patients}
    assert sorted(message.to[0] for message in sent_mails()) == sorted(
        emails_of[pk] for pk in winners.values()
    )


# --- One patient, many slots at the same time ------------------------------------------------

SAME_TIME_SLOTS = 10


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_one_patient_booking_many_slots_at_the_same_time_gets_exactly_one(
    vendor, make_patient, clinic
):
    """The overlap check cannot race: the patient's bookings are serialised."""
    assert connection.vendor == vendor
    patient = make_patient().user
    starts_at = slot_create(practitioner=practitioner_create(clinic=clinic)).starts_at
    slots = [
        slot_create(practitioner=practitioner_create(clinic=clinic), starts_at=starts_at)
        for _ in range(SAME_TIME_SLOTS)
    ]
    barrier = threading.Barrier(SAME_TIME_SLOTS)
    outcomes: list[str] = []

    def book_one(slot):
        def target():
            connection.ensure_connection()
            barrier.wait(timeout=60)
            outcomes.append(attempt_booking(patient, slot.public_id)[0])

        return target

    errors = run_together([book_one(slot) for slot in slots])

    assert errors == []
    assert Counter(outcomes) == {"booked": 1, "overlapping_appointment": SAME_TIME_SLOTS - 1}
    assert Appointment.objects.filter(patient=patient, status=AppointmentStatus.BOOKED).count() == 1
    assert Slot.objects.filter(pk__in=[slot.pk for slot in slots], is_booked=True).count() == 1


# --- B4: cancel and book on the same slots at once -------------------------------------------

BOOKERS = 8
B4_SLOTS = 4
PASSES = 6


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_concurrent_cancel_and_book_never_give_two_appointments_for_one_slot(
    vendor, make_patient, clinic
):
    assert connection.vendor == vendor
    doctor = practitioner_create(clinic=clinic)
    slots = [slot_create(practitioner=doctor) for _ in range(B4_SLOTS)]
    slot_ids = [slot.public_id for slot in slots]
    patients = [make_patient().user for _ in range(BOOKERS)]
    cancellers = [doctor, staff_create(clinic=clinic, role=Role.CLINIC_ADMIN)]
    # Every slot starts booked, so the first moves are the clinic's cancels racing the bookers.
    for slot, patient in zip(slots, patients, strict=False):
        appointment_book(patient=patient, slot_id=slot.public_id)
    results: list[tuple[str, str]] = []
    out_of_step: list[list[int]] = []
    barrier = threading.Barrier(BOOKERS + len(cancellers))

    def booker(patient, seed):
        def target():
            chance = random.Random(seed)
            connection.ensure_connection()
            barrier.wait(timeout=60)
            for _ in range(PASSES):
                for slot_id in chance.sample(slot_ids, len(slot_ids)):
                    outcome, appointment = attempt_booking(patient, slot_id)
                    results.append(("book", outcome))
                    if appointment is not None and chance.random() < 0.5:
                        results.append(("cancel", attempt_cancel(patient, appointment.pk)))

        return target

    def canceller(actor):
        def target():
            connection.ensure_connection()
            barrier.wait(timeout=60)
            for _ in range(PASSES * B4_SLOTS):
                booked = Appointment.objects.filter(
                    slot__in=slots, status=AppointmentStatus.BOOKED
                ).values_list("pk", flat=True)
                for appointment_id in list(booked):
                    results.append(("cancel", attempt_cancel(actor, appointment_id)))

        return target

    def watch(stop):
        """Between the writers' commits, `is_booked` always agrees with the appointments."""
        while not stop.is_set():
            if mismatched := slots_out_of_step([slot.pk for slot in slots]):
                out_of_step.append(mismatched)

    errors = run_together(
        [booker(patient, seed) for seed, patient in enumerate(patients)]
        + [canceller(actor) for actor in cancellers],
        alongside=watch,
    )

    assert errors == []
    assert out_of_step == []
    # A patient who holds a slot and tries it again is told they have that appointment already.
    allowed = {
        ("book", "booked"),
        ("book", "slot_taken"),
        ("book", "overlapping_appointment"),
        ("cancel", "cancelled"),
        ("cancel", "not_cancellable"),
    }
    unexpected = sorted({result for result in results if result not in allowed})
    assert not unexpected, "\n".join(map(repr, unexpected))
    counted = Counter(results)
    # The race really ran: slots were freed and booked again many times.
    assert counted["book", "booked"] > B4_SLOTS
    assert counted["cancel", "cancelled"] > B4_SLOTS
    per_slot = booked_per_slot(slots)
    assert max(per_slot.values()) <= 1
    assert slots_out_of_step([slot.pk for slot in slots]) == []
    # Every reported success happened, once: bookings minus cancellations is what is booked now.
    assert B4_SLOTS + counted["book", "booked"] - counted["cancel", "cancelled"] == sum(
        per_slot.values()
    )


# --- The same race over HTTP, through a running threaded server -------------------------------

HTTP_PATIENTS = 30


def connect(session: requests.Session, base_url: str) -> None:
    """Open the session's keep-alive connection before the race: the test server's listen
    backlog (10) would otherwise reset some of 30 connections opened in the same instant."""
    for attempt in range(5):
        try:
            session.get(f"{base_url}/api/health", timeout=30).raise_for_status()
            return
        except requests.ConnectionError:
            if attempt == 4:
                raise


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_concurrent_bookings_over_http_give_one_201_and_409_slot_taken_for_the_rest(
    vendor, live_server, make_patient, slot, sent_mails
):
    assert connection.vendor == vendor
    tokens = [make_patient() for _ in range(HTTP_PATIENTS)]
    barrier = threading.Barrier(HTTP_PATIENTS)
    responses: list[tuple[int, dict, int]] = []

    def post_booking(token):
        def target():
            with requests.Session() as session:
                connect(session, live_server.url)
                barrier.wait(timeout=60)
                response = session.post(
                    f"{live_server.url}/api/appointments",
                    json={"slot_id": slot.public_id, "reason": "Kontrolle"},
                    headers={"Authorization": f"Bearer {token.raw}"},
                    timeout=60,
                )
            responses.append((response.status_code, response.json(), token.user.pk))

        return target

    errors = run_together([post_booking(token) for token in tokens])

    assert errors == []
    assert Counter(status for status, _, _ in responses) == {201: 1, 409: HTTP_PATIENTS - 1}
    for status, body, _ in responses:
        if status == 409:
            assert body["code"] == "slot_taken"
            assert body["detail"]
    ((_, created, winner),) = [response for response in responses if response[0] == 201]
    assert created["slot"]["id"] == slot.public_id
    appointment = Appointment.objects.get(slot=slot, status=AppointmentStatus.BOOKED)
    assert (str(appointment.pk), appointment.patient_id) == (created["id"], winner)
    assert Appointment.objects.count() == 1
    assert [message.to for message in sent_mails()] == [[appointment.patient.email]]


# --- Booking while the clinic writes to the same patient's record -----------------------------

PAIRS = 4
REPEATS = 15


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_booking_while_the_practitioner_writes_the_patients_record_never_fails(
    vendor, make_patient, clinic
):
    """Both commit while holding the audit chain's lock; neither may wait for a row lock the
    other holds (on PostgreSQL the entry's deferred foreign key check on the patient's row)."""
    assert connection.vendor == vendor
    doctor = practitioner_create(clinic=clinic)
    patients = [make_patient().user for _ in range(PAIRS)]
    slots = [slot_create(practitioner=doctor) for _ in range(PAIRS)]
    results: list[tuple[str, str]] = []
    barrier = threading.Barrier(2 * PAIRS)

    def book_and_cancel(patient, slot):
        def target():
            connection.ensure_connection()
            barrier.wait(timeout=60)
            for _ in range(REPEATS):
                outcome, appointment = attempt_booking(patient, slot.public_id)
                results.append(("book", outcome))
                if appointment is not None:
                    results.append(("cancel", attempt_cancel(patient, appointment.pk)))

        return target

    def write_record(patient):
        def target():
            connection.ensure_connection()
            barrier.wait(timeout=60)
            for number in range(REPEATS):
                try:
                    record_entry_create(
                        actor=doctor,
                        patient=patient,
                        clinic=clinic,
                        category=RecordCategory.NOTE,
                        title=f"Notiz {number}",
                        body="Rückruf vereinbart.",
                    )
                    results.append(("write", "written"))
                except Exception as error:
                    results.append(("write", f"{type(error).__name__}: {error}"))

        return target

    errors = run_together(
        [book_and_cancel(patient, slot) for patient, slot in zip(patients, slots, strict=True)]
        + [write_record(patient) for patient in patients]
    )

    assert errors == []
    assert Counter(results) == {
        ("book", "booked"): PAIRS * REPEATS,
        ("cancel", "cancelled"): PAIRS * REPEATS,
        ("write", "written"): PAIRS * REPEATS,
    }


# --- Issue 16: a two-slot motive racing two one-slot bookings over the same time -------------

MOTIVE_ROUNDS = {"postgresql": 10, "sqlite": 4}


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_a_40_minute_motive_racing_two_20_minute_bookings_exactly_one_side_wins(
    vendor, make_patient, clinic
):
    """Each round: one patient books a 40-minute motive over slots A+B while two others book
    A and B alone, all at once. Either the motive gets both slots and the others nothing, or
    the two short bookings get theirs and the motive nothing: never a slot twice, never half."""
    from booking.models import AppointmentSlot, VisitMotive
    from booking.tests.factories import membership_of, specialty_get

    assert connection.vendor == vendor
    doctor = practitioner_create(clinic=clinic)
    motive = VisitMotive.objects.create(
        membership=membership_of(doctor),
        specialty=specialty_get(),
        name_de="Erstuntersuchung",
        name_en="First examination",
        duration_minutes=40,
    )
    rounds = []
    for _ in range(MOTIVE_ROUNDS[vendor]):
        first = slot_create(practitioner=doctor)
        second = slot_create(
            practitioner=doctor, starts_at=first.ends_at
        )  # factories' next hour: no overlap with the next round's first
        rounds.append((first, second))
    long_patient, *short_patients = [make_patient().user for _ in range(3)]
    barrier = threading.Barrier(3)
    outcomes: dict[int, dict[str, str]] = defaultdict(dict)

    def racer(name, patient, pick_slot, motive_id=None):
        def target():
            connection.ensure_connection()
            for number, pair in enumerate(rounds):
                try:
                    barrier.wait(timeout=60)
                except threading.BrokenBarrierError:
                    return
                try:
                    appointment_book(
                        patient=patient, slot_id=pick_slot(pair).public_id, motive_id=motive_id
                    )
                    outcome = "booked"
                except Conflict as conflict:
                    outcome = conflict.code
                except Exception as error:
                    outcome = f"{type(error).__name__}: {error}"
                outcomes[number][name] = outcome

        return target

    errors = run_together(
        [
            racer("motive", long_patient, lambda pair: pair[0], motive.pk),
            racer("first", short_patients[0], lambda pair: pair[0]),
            racer("second", short_patients[1], lambda pair: pair[1]),
        ]
    )

    assert errors == []
    winners = Counter()
    for number, (first, second) in enumerate(rounds):
        got = outcomes[number]
        assert got in (
            {"motive": "booked", "first": "slot_taken", "second": "slot_taken"},
            {"motive": "slot_taken", "first": "booked", "second": "booked"},
        ), f"round {number}: {got}"
        winners["motive" if got["motive"] == "booked" else "short"] += 1
        active = AppointmentSlot.objects.filter(slot__in=[first, second], is_active=True)
        assert sorted(active.values_list("slot_id", flat=True)) == [first.pk, second.pk]
        assert set(
            Slot.objects.filter(pk__in=[first.pk, second.pk]).values_list("is_booked", flat=True)
        ) == {True}
    booked = Appointment.objects.filter(status=AppointmentStatus.BOOKED)
    assert booked.count() == winners["motive"] + 2 * winners["short"]


# --- Issue 19: a move into a slot racing a booking of it -----------------------------------

MOVE_ROUNDS = {"postgresql": 10, "sqlite": 4}


@pytest.mark.django_db(transaction=True)
@BOTH_DATABASES
def test_a_move_into_a_slot_racing_a_booking_of_it_exactly_one_wins(vendor, make_patient):
    """Each round: patient A moves their appointment into slot S while patient B books S, at
    once. Exactly one gets S; A's move that lost leaves A's appointment where it was, its old
    slot still booked; A's move that won frees the old slot."""
    from booking.services import appointment_move

    assert connection.vendor == vendor
    doctor = practitioner_create()
    mover, booker = make_patient().user, make_patient().user
    rounds = []
    for _ in range(MOVE_ROUNDS[vendor]):
        old, target = slot_create(practitioner=doctor), slot_create(practitioner=doctor)
        rounds.append((appointment_book(patient=mover, slot_id=old.public_id), old, target))
    barrier = threading.Barrier(2)
    outcomes: dict[int, dict[str, str]] = defaultdict(dict)

    def racer(name, act):
        def target():
            connection.ensure_connection()
            for number, (appointment, _, slot) in enumerate(rounds):
                try:
                    barrier.wait(timeout=60)
                except threading.BrokenBarrierError:
                    return
                try:
                    act(appointment, slot)
                    outcome = "won"
                except Conflict as conflict:
                    outcome = conflict.code
                except Exception as error:
                    outcome = f"{type(error).__name__}: {error}"
                outcomes[number][name] = outcome

        return target

    errors = run_together(
        [
            racer(
                "move",
                lambda appointment, slot: appointment_move(
                    actor=mover, appointment_id=appointment.pk, slot_id=slot.public_id
                ),
            ),
            racer(
                "book",
                lambda appointment, slot: appointment_book(patient=booker, slot_id=slot.public_id),
            ),
        ]
    )

    assert errors == []
    for number, (appointment, old, target) in enumerate(rounds):
        got = outcomes[number]
        assert got in ({"move": "won", "book": "slot_taken"}, {"move": "slot_taken", "book": "won"})
        appointment.refresh_from_db()
        if got["move"] == "won":
            assert appointment.slot_id == target.pk and appointment.moves == 1
            assert booked_per_slot([old, target]) == {old.pk: 0, target.pk: 1}
        else:
            assert appointment.slot_id == old.pk and appointment.moves == 0
            assert booked_per_slot([old, target]) == {old.pk: 1, target.pk: 1}
            assert Appointment.objects.get(slot=target, status="booked").patient_id == booker.pk
    assert slots_out_of_step([slot.pk for _, *pair in rounds for slot in pair]) == []
