"""Where one booking's time goes: `appointment_book` by one client, on PostgreSQL.

    BENCH_DB_SUFFIX=_me DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
        .venv/bin/python scripts/profile_booking.py [--bookings 300] [--output profile.txt]

Builds the throwaway database `bench_profile` (+ BENCH_DB_SUFFIX), books 20 slots to warm up,
prints the statements of one booking (CaptureQueriesContext), then books --bookings slots under
pyinstrument and prints wall and CPU time a booking; the profile goes to --output (decision
0022 used it before and after each step, alternating with the older code).
"""

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import django_on  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=300, help="bookings profiled")
    parser.add_argument("--output", default="var/profile-booking.txt", help="pyinstrument text")
    arguments = parser.parse_args()
    django_on("bench_profile", "scripts/profile_booking.py")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from accounts.models import Clinic, Membership, Role, User
    from accounts.services import ClientInfo
    from booking.models import Slot, Specialty
    from booking.services import appointment_book
    from vault.services import patient_register

    specialty = Specialty.objects.create(slug="allgemeinmedizin", name_de="A", name_en="G")
    clinic = Clinic.objects.create(name="Bench", slug="bench", city="Berlin", address="x")
    doctor = User.objects.create(email="doc@bench.de", role=Role.PRACTITIONER, last_name="Doc")
    Membership.objects.create(user=doctor, clinic=clinic, role=Role.PRACTITIONER)
    patients = [
        patient_register(
            email=f"p{n}@bench.de",
            password="Bench-Passwort-2026",  # noqa: S106 (throwaway accounts)
            first_name="Berta",
            last_name=f"P{n}",
            date_of_birth=datetime.date(1980, 1, 1),
            client=ClientInfo(),
        ).user
        for n in range(4)
    ]
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    slots = Slot.objects.bulk_create(
        Slot(
            clinic=clinic,
            practitioner=doctor,
            specialty=specialty,
            starts_at=start + datetime.timedelta(minutes=10 * n),
            ends_at=start + datetime.timedelta(minutes=10 * n + 10),
        )
        for n in range(arguments.bookings + 21)
    )
    slot_ids = [slot.public_id for slot in slots]
    for n in range(20):  # warm: every patient known at the clinic, caches filled
        appointment_book(patient=patients[n % 4], slot_id=slot_ids[n])
    with CaptureQueriesContext(connection) as queries:
        appointment_book(patient=patients[0], slot_id=slot_ids[20])
    print(f"statements of one booking: {len(queries.captured_queries)}")
    for query in queries.captured_queries:
        print("  ", query["sql"][:140])

    profiler = Profiler(interval=0.0005)
    cpu, wall = time.process_time(), time.perf_counter()
    profiler.start()
    for n in range(21, 21 + arguments.bookings):
        appointment_book(patient=patients[n % 4], slot_id=slot_ids[n])
    profiler.stop()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"a booking: wall {wall / arguments.bookings * 1000:.2f} ms, "
        f"CPU {cpu / arguments.bookings * 1000:.2f} ms"
    )
    Path(arguments.output).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.output).write_text(profiler.output_text(unicode=True, show_all=False))
    print(f"profile: {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
