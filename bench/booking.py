"""Booking and search on PostgreSQL, measured against comparisons from the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/booking.py
    ... bench/booking.py --quick           # small sizes, seconds
    ... bench/booking.py --sizes 10000 1000000 --clients 16 --bookings 50 --port 18100

Builds a throwaway database `bench_booking` on the server of DATABASE_URL and prints:

- bookings per second with --clients concurrent clients, three ways: through
  `booking.services.appointment_book` (claim, encrypted snapshot, care relationship, chained
  audit row); through HTTP, `POST /api/appointments` against gunicorn on loopback --port; and
  the floor, the same claim as a raw conditional UPDATE plus an INSERT through psycopg, one
  transaction each; and the Django floor, the same booking the way a plain Django app
  writes it (transaction.atomic, the slot read, the conditional UPDATE through the ORM,
  `objects.create` of an appointment without the encrypted snapshot; no consent, audit or
  e-mail). Each client tries its own --bookings slots and then its neighbour's, so
  every slot is raced for by two clients: exactly one booking per slot is asserted after every
  run (no double booking, none lost). The service's confirmations, which its bookings wrote to
  the outbox, are then sent by one sender (`booking.outbox.mails_send`) and timed apart.
  Figures: the service against the Django floor (goal >= 0.25, decision 0022) and against the
  raw floor; HTTP against the raw floor.
- search latency: `GET /api/slots?specialty=…&city=…&limit=50` (the page and its count) at each
  size of --sizes, median of --repeat requests, as a ratio to the smallest size, and the query
  plan of the page query.
- visit motives (issue 16): bookings per second of a two-slot motive (20 minutes on the
  10-minute grid) against a one-slot motive, both through `appointment_book` with --clients
  clients racing as above (all-or-none asserted); and search by motive at each size:
  `GET /api/slots?motive=…` (a 40-minute motive on a 20-minute grid, the SQL chain) and the
  portal's grouped week search `GET /?specialty=kinderheilkunde` (ten practitioners' cards), as
  a ratio to the smallest size (goal <= 1.5).
"""

import argparse
import contextlib
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Figure,
    Gunicorn,
    add_output_arguments,
    django_on,
    http_json,
    median_seconds,
    profile_to,
    run_threads,
    write_figures,
)

DATABASE = "bench_booking"
PASSWORD = "Bench-Passwort-2026"  # noqa: S105 (throwaway accounts)


def median_ms(action, repeat: int) -> float:
    return median_seconds(action, repeat) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--bookings", type=int, default=50, help="per client")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--port", type=int, default=18100, help="loopback port for gunicorn")
    parser.add_argument("--quick", action="store_true", help="sizes 2000 and 20000, 5 bookings")
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.sizes, arguments.bookings, arguments.repeat = [2_000, 20_000], 5, 10

    django_on(DATABASE, "bench/booking.py")
    from django.db import connection
    from django.test import Client

    from accounts.models import Clinic, Membership, Role, User
    from accounts.services import ClientInfo
    from booking.models import Appointment, AppointmentStatus, Slot, Specialty
    from booking.services import appointment_book
    from patterm.errors import Conflict
    from vault.services import patient_register

    print(f"PostgreSQL {connection.pg_version // 10000}, database {DATABASE}")

    # --- bookings per second ---------------------------------------------------------------
    specialty = Specialty.objects.create(slug="allgemeinmedizin", name_de="A", name_en="G")
    clinic = Clinic.objects.create(name="Bench", slug="bench", city="Berlin", address="x")
    doctor = User.objects.create(email="doc@bench.de", role=Role.PRACTITIONER, last_name="Doc")
    Membership.objects.create(user=doctor, clinic=clinic, role=Role.PRACTITIONER)
    patients = [
        patient_register(
            email=f"p{n}@bench.de",
            password=PASSWORD,
            first_name="Berta",
            last_name=f"P{n}",
            date_of_birth=datetime.date(1980, 1, 1),
            client=ClientInfo(),
        ).user
        for n in range(arguments.clients)
    ]
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    per_run = arguments.clients * arguments.bookings

    def make_slots(offset: int, count: int | None = None) -> list[int]:
        slots = Slot.objects.bulk_create(
            Slot(
                clinic=clinic,
                practitioner=doctor,
                specialty=specialty,
                starts_at=start + datetime.timedelta(minutes=10 * (offset + n)),
                ends_at=start + datetime.timedelta(minutes=10 * (offset + n) + 10),
            )
            for n in range(count or per_run)
        )
        return [slot.pk for slot in slots]

    def attempts(slots: list[int], client: int) -> list[int]:
        """Its own slots, then its neighbour's: every slot is raced for by two clients."""
        own = slots[client * arguments.bookings : (client + 1) * arguments.bookings]
        neighbour = (client + 1) % arguments.clients
        return own + slots[neighbour * arguments.bookings : (neighbour + 1) * arguments.bookings]

    def assert_one_booking_per_slot(how: str, slots: list[int]) -> None:
        booked = Appointment.objects.filter(status=AppointmentStatus.BOOKED, slot_id__in=slots)
        count, distinct = booked.count(), booked.values("slot").distinct().count()
        if not count == distinct == per_run:
            raise SystemExit(
                f"DOUBLE OR LOST BOOKING through {how}: {count} bookings of {distinct} slots, "
                f"{per_run} expected"
            )

    service_slots = make_slots(0)

    def book_through_service(client: int):
        for slot_pk in attempts(service_slots, client):
            with contextlib.suppress(Conflict):  # the neighbour got it first
                appointment_book(patient=patients[client], slot_id=f"slot-{slot_pk:03d}")

    service_seconds = run_threads(arguments.clients, book_through_service)
    assert_one_booking_per_slot("the service", service_slots)
    # The confirmations the bookings wrote to the outbox, sent as `manage.py send_mails` does
    # (decision 0022): the work that left the request, timed on its own (one sender).
    from django.core import mail

    from booking.outbox import mails_send

    mail.outbox = []
    sender_started = time.perf_counter()
    sent = mails_send().sent
    sender_seconds = time.perf_counter() - sender_started
    if sent != per_run or len(mail.outbox) != per_run:
        raise SystemExit(f"the outbox sent {sent} confirmations for {per_run} bookings")

    # --- through HTTP, gunicorn on loopback ----------------------------------------------------
    http_slots = make_slots(per_run)
    with Gunicorn(arguments.port, workers=3, threads=8) as server:
        tokens = []
        for n in range(arguments.clients):
            status, body = http_json(
                "POST",
                f"{server.base}/api/auth/login",
                {"email": f"p{n}@bench.de", "password": PASSWORD},
            )
            if status != 200:
                raise SystemExit(f"login through HTTP failed: {status} {body}")
            tokens.append(body["token"])
        unexpected = []

        def book_through_http(client: int):
            for slot_pk in attempts(http_slots, client):
                status, body = http_json(
                    "POST",
                    f"{server.base}/api/appointments",
                    {"slot_id": f"slot-{slot_pk:03d}"},
                    token=tokens[client],
                )
                if status != 201 and not (status == 409 and body and body["code"] == "slot_taken"):
                    unexpected.append((status, body))

        http_seconds = run_threads(arguments.clients, book_through_http)
    if unexpected:
        raise SystemExit(f"unexpected answers through HTTP: {unexpected[:3]}")
    assert_one_booking_per_slot("HTTP", http_slots)

    floor_slots = make_slots(2 * per_run)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_floor (slot_id bigint UNIQUE, patient_id bigint)")

    def book_raw(client: int):
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"]) as raw:
            for slot_pk in attempts(floor_slots, client):
                with raw.transaction():
                    claimed = raw.execute(
                        "UPDATE booking_slot SET is_booked = true WHERE id = %s AND NOT is_booked",
                        [slot_pk],
                    ).rowcount
                    if claimed:
                        raw.execute(
                            "INSERT INTO bench_floor VALUES (%s, %s)",
                            [slot_pk, patients[client].pk],
                        )

    floor_seconds = run_threads(arguments.clients, book_raw)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT slot_id) FROM bench_floor")
        if cursor.fetchone() != (per_run, per_run):
            raise SystemExit("DOUBLE OR LOST BOOKING through the floor")

    # --- the Django floor: the same booking the way a plain Django app writes it -------------
    # transaction.atomic, the slot read (its times; a 404 for an unknown one), the conditional
    # UPDATE through the ORM, Model.objects.create of an appointment: no consent, no encrypted
    # snapshot, no audit row, no e-mail. Its model is Appointment without the snapshot (whose
    # fields are encrypted): a table of its own with the same one-booked-per-slot index.
    from django.db import models, transaction
    from django.db.models import Q

    class PlainAppointment(models.Model):
        slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="+")
        patient = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
        status = models.CharField(max_length=16, default="booked")
        starts_at = models.DateTimeField()
        ends_at = models.DateTimeField()
        booked_at = models.DateTimeField(auto_now_add=True)
        reason = models.TextField(blank=True)

        class Meta:
            app_label = "booking"
            db_table = "bench_plain_appointment"
            constraints = [
                models.UniqueConstraint(
                    fields=["slot"], condition=Q(status="booked"), name="bench_plain_one_per_slot"
                )
            ]

    with connection.schema_editor() as editor:
        editor.create_model(PlainAppointment)
    django_slots = make_slots(6 * per_run)  # after the motive runs' slots (below)

    def book_plain_django(client: int):
        for slot_pk in attempts(django_slots, client):
            with transaction.atomic():
                slot = Slot.objects.get(pk=slot_pk)
                if Slot.objects.filter(pk=slot_pk, is_booked=False).update(is_booked=True):
                    PlainAppointment.objects.create(
                        slot=slot,
                        patient=patients[client],
                        starts_at=slot.starts_at,
                        ends_at=slot.ends_at,
                    )

    django_seconds = run_threads(arguments.clients, book_plain_django)
    plain = PlainAppointment.objects.filter(status="booked")
    if not plain.count() == plain.values("slot").distinct().count() == per_run:
        raise SystemExit("DOUBLE OR LOST BOOKING through the Django floor")

    service_rate, floor_rate = per_run / service_seconds, per_run / floor_seconds
    http_rate, django_rate = per_run / http_seconds, per_run / django_seconds
    print(f"\nBookings, {arguments.clients} concurrent clients, {per_run} bookings each way:")
    print(f"{'':<34}{'bookings/s':>12}{'x raw floor':>13}{'x Django floor':>16}")
    for label, rate in (
        ("raw UPDATE + INSERT (floor)", floor_rate),
        ("plain Django (Django floor)", django_rate),
        ("appointment_book (Patterm)", service_rate),
        ("POST /api/appointments, gunicorn", http_rate),
    ):
        print(f"{label:<34}{rate:>12.1f}{rate / floor_rate:>13.2f}{rate / django_rate:>16.2f}")
    print("exactly one booking per raced-for slot in all four runs (asserted)")
    print(
        f"the {per_run} confirmations, rendered with their calendar files and sent by one "
        f"outbox sender after the run: {per_run / sender_seconds:.1f} mails/s "
        f"({sender_seconds / per_run * 1000:.2f} ms each)"
    )
    figures = [
        Figure(
            name=f"booking, {arguments.clients} clients, service",
            unit="bookings/s",
            patterm=service_rate,
            comparison=floor_rate,
            comparison_name="raw UPDATE + INSERT",
            note="zero double bookings asserted",
        ),
        Figure(
            name=f"booking, {arguments.clients} clients, service vs plain Django",
            unit="bookings/s",
            patterm=service_rate,
            comparison=django_rate,
            comparison_name="Django floor (atomic, ORM UPDATE + create)",
            goal=">= 0.25",  # decision 0022: ten statements against the floor's three
            note="zero double bookings asserted; decision 0022",
        ),
        Figure(
            name=f"booking, {arguments.clients} clients, HTTP (gunicorn)",
            unit="bookings/s",
            patterm=http_rate,
            comparison=floor_rate,
            comparison_name="raw UPDATE + INSERT",
            note="zero double bookings asserted",
        ),
    ]

    # --- visit motives: a two-slot motive against a one-slot motive --------------------------
    from booking.models import AppointmentSlot, VisitMotive

    def motive_of(minutes: int) -> VisitMotive:
        membership = Membership.objects.get(user=doctor, clinic=clinic)
        return VisitMotive.objects.create(
            membership=membership,
            specialty=specialty,
            name_de=f"M{minutes}",
            name_en=f"M{minutes}",
            duration_minutes=minutes,
        )

    def motive_rate(motive: VisitMotive, slots_each: int, offset: int) -> float:
        slots = make_slots(offset, per_run * slots_each)
        starts = slots[::slots_each]

        def book(client: int):
            for slot_pk in attempts(starts, client):
                with contextlib.suppress(Conflict):
                    appointment_book(
                        patient=patients[client], slot_id=f"slot-{slot_pk:03d}", motive_id=motive.pk
                    )

        seconds = run_threads(arguments.clients, book)
        active = AppointmentSlot.objects.filter(slot_id__in=slots, is_active=True)
        if not active.count() == active.values("slot").distinct().count() == len(slots):
            raise SystemExit(f"DOUBLE, HALF OR LOST BOOKING of the {motive.name_de} motive")
        return per_run / seconds

    one_slot_rate = motive_rate(motive_of(10), 1, 3 * per_run)
    two_slot_rate = motive_rate(motive_of(20), 2, 4 * per_run)
    print(f"\nMotives through appointment_book, {arguments.clients} clients, {per_run} each:")
    print(f"{'':<34}{'bookings/s':>12}{'x one-slot':>12}")
    print(f"{'one-slot motive (10 min)':<34}{one_slot_rate:>12.1f}{1:>12.2f}")
    print(
        f"{'two-slot motive (20 min)':<34}{two_slot_rate:>12.1f}"
        f"{two_slot_rate / one_slot_rate:>12.2f}"
    )
    print("every slot occupied exactly once, pairs all or none (asserted)")
    figures.append(
        Figure(
            name=f"motive booking, {arguments.clients} clients, two slots vs one",
            unit="bookings/s",
            patterm=two_slot_rate,
            comparison=one_slot_rate,
            comparison_name="one-slot motive",
            note="zero double or half bookings asserted",
        )
    )

    # --- search latency ----------------------------------------------------------------------
    cities = ["Berlin", "München", "Hamburg", "Köln", "Leipzig"]
    slugs = ["allgemeinmedizin", "kardiologie", "dermatologie", "orthopaedie", "kinderheilkunde"]
    for slug in slugs[1:]:
        Specialty.objects.create(slug=slug, name_de=slug, name_en=slug)
    clinic_ids = [clinic.pk] + [
        Clinic.objects.create(name=f"C{n}", slug=f"c{n}", city=cities[n % 5], address="x").pk
        for n in range(1, 100)
    ]
    practitioners = 1000
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (password, email, role, first_name, last_name, is_active,"
            " is_staff, is_superuser, date_joined) SELECT '!', 'doc' || n || '@bench.de', "
            "'practitioner', 'Dr', 'N' || n, true, false, false, now() "
            "FROM generate_series(1, %s) AS n",
            [practitioners],
        )
    doctor_ids = list(
        User.objects.filter(email__startswith="doc", email__endswith="@bench.de")
        .exclude(pk=doctor.pk)
        .values_list("pk", flat=True)
    )
    specialty_ids = list(Specialty.objects.order_by("slug").values_list("pk", flat=True))
    # Ten paediatricians with memberships and a 40-minute motive, four weeks of a 20-minute grid
    # (9-12 h, every fifth slot booked): what search by motive reads, fixed while the table grows.
    from booking.models import PractitionerSpecialty

    paediatrics = Specialty.objects.get(slug="kinderheilkunde")
    motive_clinic = Clinic.objects.create(
        name="Kinderpraxis", slug="kinderpraxis", city="Hamburg", address="x"
    )
    motive_ids = []
    for n in range(10):
        paediatrician = User.objects.create(
            email=f"kinder{n}@bench.de", role=Role.PRACTITIONER, last_name=f"K{n}"
        )
        membership = Membership.objects.create(
            user=paediatrician, clinic=motive_clinic, role=Role.PRACTITIONER
        )
        PractitionerSpecialty.objects.create(membership=membership, specialty=paediatrics)
        motive_ids.append(
            VisitMotive.objects.create(
                membership=membership,
                specialty=paediatrics,
                name_de="U-Untersuchung",
                name_en="U",
                duration_minutes=40,
            ).pk
        )
        Slot.objects.bulk_create(
            Slot(
                clinic=motive_clinic,
                practitioner=paediatrician,
                specialty=paediatrics,
                starts_at=start + datetime.timedelta(days=day, hours=8, minutes=20 * k),
                ends_at=start + datetime.timedelta(days=day, hours=8, minutes=20 * k + 20),
                is_booked=(k % 5 == 4),
            )
            for day in range(28)
            for k in range(9)
        )
    motive_query = f"/api/slots?motive={motive_ids[0]}&limit=50"
    week_query = "/?specialty=kinderheilkunde"
    motive_results, week_results = [], []
    client = Client()
    query = "/api/slots?specialty=kardiologie&city=Hamburg&limit=50"
    results = []
    filled = Slot.objects.count()
    for size in sorted(arguments.sizes):
        missing = size - filled
        if missing > 0:
            with connection.cursor() as cursor:
                # Practitioner n gets slots n, n+P, n+2P, ... ten minutes apart: no overlaps.
                cursor.execute(
                    """
                    INSERT INTO booking_slot
                        (clinic_id, practitioner_id, specialty_id, starts_at, ends_at,
                         is_booked, created_at)
                    SELECT (%(clinics)s)[1 + (s %% 100)],
                           (%(doctors)s)[1 + (s %% %(p)s)],
                           (%(specialties)s)[1 + ((s / %(p)s) %% 5)],
                           %(start)s + make_interval(mins => 10 * (s / %(p)s)),
                           %(start)s + make_interval(mins => 10 * (s / %(p)s) + 10),
                           (s %% 7 = 0), now()
                    FROM generate_series(%(first)s, %(last)s) AS s
                    """,
                    {
                        "clinics": clinic_ids,
                        "doctors": doctor_ids,
                        "specialties": specialty_ids,
                        "p": practitioners,
                        "start": start + datetime.timedelta(days=400),
                        "first": filled,
                        "last": size - 1,
                    },
                )
                cursor.execute("VACUUM ANALYZE")  # statistics, as autovacuum keeps them
            filled = size
        if client.get(query).status_code != 200:
            raise SystemExit(f"{query} failed")
        results.append((size, median_ms(lambda: client.get(query), arguments.repeat)))
        found = client.get(motive_query)
        if found.status_code != 200 or not found.json()["items"]:
            raise SystemExit(f"{motive_query} failed or found nothing")
        motive_results.append((size, median_ms(lambda: client.get(motive_query), arguments.repeat)))
        week = client.get(week_query)
        if week.status_code != 200 or week.content.count(b'class="practitioner-card"') != 10:
            raise SystemExit(f"{week_query} failed or showed not ten practitioners")
        week_results.append((size, median_ms(lambda: client.get(week_query), arguments.repeat)))

    print(f"\nSearch {query}, median of {arguments.repeat} requests:")
    print(f"{'slots':>12}{'ms':>10}{'x smallest':>12}")
    for size, ms in results:
        print(f"{size:>12,}{ms:>10.2f}{ms / results[0][1]:>12.2f}")

    for label, measured in ((motive_query, motive_results), (week_query, week_results)):
        print(f"\nSearch by motive {label}, median of {arguments.repeat} requests:")
        print(f"{'slots':>12}{'ms':>10}{'x smallest':>12}")
        for size, ms in measured:
            print(f"{size:>12,}{ms:>10.2f}{ms / measured[0][1]:>12.2f}")
        figures.append(
            Figure(
                name=f"search by motive {label.split('?')[0]}, "
                f"{measured[-1][0]:,} vs {measured[0][0]:,} slots",
                unit="ms",
                patterm=measured[-1][1],
                comparison=measured[0][1],
                comparison_name=f"at {measured[0][0]:,} slots",
                goal="<= 1.5",
                scaling=[{"label": label, "x": "slots", "points": [list(r) for r in measured]}],
            )
        )

    from booking.services import free_slots

    page = free_slots(specialty="kardiologie", city="Hamburg")[:50]
    with connection.cursor() as cursor:
        sql, params = page.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
    print("\nPlan of the page query at the largest size:")
    print("\n".join("  " + line for line in plan))
    uses_index = any("Index" in line for line in plan)
    figures.append(
        Figure(
            name=f"search GET /api/slots, {results[-1][0]:,} vs {results[0][0]:,} slots",
            unit="ms",
            patterm=results[-1][1],
            comparison=results[0][1],
            comparison_name=f"at {results[0][0]:,} slots",
            goal="<= 1.5",
            scaling=[{"label": query, "x": "slots", "points": [list(r) for r in results]}],
            note="plan uses an index" if uses_index else "plan uses NO index",
        )
    )
    if not uses_index:
        raise SystemExit("the page query does not use an index")
    if figures[-1].met is False:
        profile_to(
            arguments.profile_dir and f"{arguments.profile_dir}/search.txt",
            lambda: [client.get(query) for _ in range(10)],
        )
    write_figures(arguments.json, "booking", figures, plan=plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
