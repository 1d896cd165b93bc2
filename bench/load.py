"""Load and faults: many clients against gunicorn on a private PostgreSQL, bounded in time.

    .venv/bin/python bench/load.py                      # 200 clients, 60 s, with faults
    .venv/bin/python bench/load.py --quick              # 20 clients, 12 s
    .venv/bin/python bench/load.py --clients 100 --seconds 30 --no-faults

Everything stays on loopback. So that restarting PostgreSQL disturbs nobody else, the script
starts its own server: `initdb` into a temporary directory (as the `postgres` user when run as
root) on --pg-port, database `bench_load`. It loads one clinic, a practitioner, slots, and one
patient per client (with a token and record entries), starts gunicorn on --port, and lets
--clients threads search (`GET /api/slots`), read their record (`GET /api/patient/record`) and
book (`POST /api/appointments`, random slots, so clients race) for --seconds.

Faults, unless --no-faults: at 30% of the time a gunicorn worker is killed (SIGKILL; the master
starts another), at 55% PostgreSQL is stopped for --outage seconds and started again.

Checked afterwards (exit 1 when one fails): no 5xx and no dropped connection outside the fault
windows; only JSON 503s (never another 5xx) while the database is down; successful answers
again after it is back, without restarting gunicorn; every 201 has its appointment and its
`appointment.book` audit event, every booked slot exactly one appointment, nothing half-written;
the audit chain verifies. Reported: requests per second and p50/p95/p99 latency per action.
"""

import argparse
import contextlib
import datetime
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, Gunicorn, add_output_arguments, write_figures  # noqa: E402

DATABASE = "bench_load"


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of the installed server version, only for this run."""

    def __init__(self, port: int):
        self.port = port
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not versions:
            raise SystemExit("bench/load.py needs the PostgreSQL server programs (initdb)")
        self.bin = versions[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="patterm-bench-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *command: str) -> None:
        subprocess.run(
            [*self.as_user, *command], check=True, stdout=subprocess.DEVNULL, cwd=self.dir
        )

    def __enter__(self):
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust",
                 "-U", "postgres", "-E", "UTF8", "--no-sync")  # fmt: skip
        self.start()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
        )
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
                 "-l", str(self.dir / "server.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--slots", type=int, default=4000, help="bookable slots")
    parser.add_argument("--outage", type=float, default=4, help="seconds PostgreSQL stays down")
    parser.add_argument("--port", type=int, default=18101, help="loopback port for gunicorn")
    parser.add_argument("--pg-port", type=int, default=18160, help="port of the private server")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--no-faults", action="store_true", help="load only, no kill or restart")
    parser.add_argument("--quick", action="store_true", help="20 clients for 16 s, 2 s outage")
    parser.add_argument("--profile-dir", help="accepted for bench/run.py; nothing is profiled")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.clients, arguments.seconds, arguments.outage = 20, 16, 2
        arguments.slots = 600
    sizes = {
        "clients": arguments.clients,
        "seconds": arguments.seconds,
        "slots": arguments.slots,
        "gunicorn workers": arguments.workers,
        "faults": "none" if arguments.no_faults else f"worker kill, {arguments.outage} s outage",
    }
    print("sizes: " + ", ".join(f"{name} {value}" for name, value in sizes.items()), flush=True)
    arguments.sizes = sizes

    with PrivatePostgres(arguments.pg_port) as postgres:
        import psycopg

        with psycopg.connect(f"{postgres.url}/postgres", autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        os.environ["DATABASE_URL"] = f"{postgres.url}/{DATABASE}"
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(f"private PostgreSQL on 127.0.0.1:{arguments.pg_port}, {postgres.dir}")
        return run(arguments, postgres)


def run(arguments, postgres) -> int:
    from django.db import connection

    from accounts.models import Clinic, Membership, Role, User
    from accounts.services import ClientInfo, token_issue
    from audit.models import AuditEvent
    from audit.services import chain_verify
    from booking.models import Appointment, AppointmentStatus, Slot, Specialty
    from vault.services import patient_register, record_entry_create

    specialty = Specialty.objects.create(slug="allgemeinmedizin", name_de="A", name_en="G")
    clinic = Clinic.objects.create(name="Load", slug="load", city="Berlin", address="x")
    doctor = User.objects.create(email="doc@load.de", role=Role.PRACTITIONER, last_name="Doc")
    Membership.objects.create(user=doctor, clinic=clinic, role=Role.PRACTITIONER)
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    slots = Slot.objects.bulk_create(
        Slot(
            clinic=clinic,
            practitioner=doctor,
            specialty=specialty,
            starts_at=start + datetime.timedelta(minutes=10 * n),
            ends_at=start + datetime.timedelta(minutes=10 * n + 10),
        )
        for n in range(arguments.slots)
    )
    slot_ids = [slot.public_id for slot in Slot.objects.filter(pk__in=[s.pk for s in slots])]
    tokens = []
    for n in range(arguments.clients):
        patient = patient_register(
            email=f"l{n}@load.de",
            password="Load-Passwort-2026",
            first_name="Lotte",
            last_name=f"L{n}",
            date_of_birth=datetime.date(1980, 1, 1),
            client=ClientInfo(),
        ).user
        for number in range(3):
            record_entry_create(
                actor=doctor, patient=patient, clinic=clinic, category="diagnosis",
                title=f"Diagnose {number}", body="Befund " * 30,
            )  # fmt: skip
        tokens.append(token_issue(user=patient, client=ClientInfo()).raw)
    connection.close()

    lock = threading.Lock()
    results = []  # (time, action, status or None, seconds, body code)
    booked_ids = []
    stop_at = [0.0]

    with Gunicorn(arguments.port, workers=arguments.workers, threads=16) as server:
        base = server.base

        def request(method, path, token, body=None):
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(f"{base}{path}", data=data, method=method)
            req.add_header("Authorization", f"Bearer {token}")
            req.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(req, timeout=30) as answer:
                    return answer.status, answer.read(), answer.headers.get("Content-Type", "")
            except urllib.error.HTTPError as error:
                return error.code, error.read(), error.headers.get("Content-Type", "")

        def client(number: int):
            rng = random.Random(number)
            token = tokens[number]
            while time.monotonic() < stop_at[0]:
                roll = rng.random()
                if roll < 0.5:
                    action, method, path, body = "search", "GET", "/api/slots?limit=20", None
                elif roll < 0.8:
                    action, method, path, body = "record", "GET", "/api/patient/record", None
                else:
                    slot = rng.choice(slot_ids)
                    action, method, path, body = (
                        "book",
                        "POST",
                        "/api/appointments",
                        {"slot_id": slot},
                    )
                began = time.monotonic()
                try:
                    status, raw, content_type = request(method, path, token, body)
                except (OSError, HTTPException) as error:
                    status, raw, content_type = None, type(error).__name__.encode(), ""
                took = time.monotonic() - began
                code = ""
                if status and status >= 400:
                    try:
                        code = json.loads(raw)["code"] if "json" in content_type else "not-json"
                    except (ValueError, KeyError):
                        code = "not-json"
                with lock:
                    results.append((began, action, status, took, code or raw[:40]))
                    if action == "book" and status == 201:
                        booked_ids.append(json.loads(raw)["id"])
                time.sleep(rng.uniform(0, 0.05))

        began = time.monotonic()
        stop_at[0] = began + arguments.seconds
        threads = [threading.Thread(target=client, args=(n,)) for n in range(arguments.clients)]
        for thread in threads:
            thread.start()
        windows = {}
        if not arguments.no_faults:
            time.sleep(max(0.0, began + 0.3 * arguments.seconds - time.monotonic()))
            victim = server.worker_pids()[0]
            windows["worker kill"] = (time.monotonic(), time.monotonic() + 2)
            os.kill(victim, signal.SIGKILL)
            print(f"killed gunicorn worker {victim} at {time.monotonic() - began:.1f} s")
            time.sleep(max(0.0, began + 0.55 * arguments.seconds - time.monotonic()))
            down = time.monotonic()
            postgres.stop("fast")
            print(f"PostgreSQL stopped at {down - began:.1f} s")
            time.sleep(arguments.outage)
            postgres.start()
            up = time.monotonic()
            print(f"PostgreSQL started again at {up - began:.1f} s")
            # However slow the machine, the load goes on long enough to show the recovery.
            stop_at[0] = max(stop_at[0], up + 2 + max(3.0, 0.2 * arguments.seconds))
            windows["database outage"] = (down - 1, up + 2)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        alive = server.process.poll() is None

    def window_of(began, took):
        """The fault a request overlapped (the outage first): in flight counts, not only begun."""
        for name in ("database outage", "worker kill"):
            if name in windows and began <= windows[name][1] and began + took >= windows[name][0]:
                return name
        return ""

    problems = []
    if not alive:
        problems.append("gunicorn's master died")
    steady = [r for r in results if not window_of(r[0], r[3])]
    bad_steady = [r for r in steady if r[2] is None or r[2] >= 500]
    if bad_steady:
        problems.append(f"{len(bad_steady)} 5xx or dropped outside the faults: {bad_steady[:3]}")
    kill = [r for r in results if window_of(r[0], r[3]) == "worker kill"]
    dropped_at_kill = [r for r in kill if r[2] is None]
    errors_at_kill = [r for r in kill if r[2] and r[2] >= 500]
    if errors_at_kill:
        problems.append(f"5xx around the worker kill: {errors_at_kill[:3]}")
    outage = [r for r in results if window_of(r[0], r[3]) == "database outage"]
    unavailable = [r for r in outage if r[2] == 503]
    wrong_outage = [r for r in outage if r[2] is not None and r[2] >= 500 and r[2] != 503]
    wrong_outage += [r for r in unavailable if r[4] != "service_unavailable"]
    if wrong_outage:
        problems.append(f"not a JSON 503 during the outage: {wrong_outage[:3]}")
    dropped_outage = [r for r in outage if r[2] is None]
    if dropped_outage:
        problems.append(f"{len(dropped_outage)} dropped connections during the outage")
    if windows:
        after = [r for r in results if r[0] > windows["database outage"][1] and r[2] == 200]
        if not after:
            problems.append("no successful answer after PostgreSQL came back")

    # What the database holds after all that.
    appointments = Appointment.objects.filter(status=AppointmentStatus.BOOKED)
    known = {str(pk) for pk in appointments.values_list("pk", flat=True)}
    missing = [a for a in booked_ids if a not in known]
    if missing:
        problems.append(f"{len(missing)} answered 201 without an appointment")
    audited = set(
        AuditEvent.objects.filter(action="appointment.book").values_list("object_id", flat=True)
    )
    unaudited = [a for a in known if a not in audited]
    if unaudited:
        problems.append(f"{len(unaudited)} appointments without their audit event")
    if (
        audited
        - known
        - set(
            Appointment.objects.exclude(status=AppointmentStatus.BOOKED).values_list(
                "pk", flat=True
            )
        )
    ):
        problems.append("audit events of appointments that do not exist (half-written)")
    per_slot = appointments.values("slot").distinct().count()
    flagged = Slot.objects.filter(is_booked=True).count()
    if not (per_slot == appointments.count() == flagged):
        problems.append(
            f"DOUBLE BOOKING or half-written: {appointments.count()} bookings, {per_slot} slots, "
            f"{flagged} slots marked booked"
        )
    verification = chain_verify()
    if not verification.ok:
        problems.append(f"the audit chain does not verify: {verification.problem}")

    print(
        f"\n{arguments.clients} clients, {elapsed:.0f} s: {len(results)} requests "
        f"({len(results) / elapsed:.0f}/s), {len(booked_ids)} bookings, "
        f"chain of {verification.events_checked} events verified={verification.ok}"
    )
    if windows:
        print(
            f"worker kill: {len(dropped_at_kill)} of {len(kill)} requests dropped (in flight in "
            f"the killed worker); outage: {len(unavailable)} JSON 503 of {len(outage)}"
        )
    figures = []
    rate = len(results) / elapsed
    print(f"{'action':<8}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for action in ("search", "record", "book"):
        times = [r[3] * 1000 for r in steady if r[1] == action and r[2] and r[2] < 500]
        p50, p95, p99 = (percentile(times, q) for q in (0.5, 0.95, 0.99))
        print(f"{action:<8}{len(times):>8}{p50:>10.1f}{p95:>10.1f}{p99:>10.1f}")
        if times:
            figures.append(
                Figure(
                    # The rate the server held belongs beside its latencies: on two shared
                    # cores a slower rate, not a longer tail, is what an overload looks like.
                    name=f"load, {arguments.clients} clients at {rate:.0f} req/s, {action}: "
                    "p99 vs p50",
                    unit="ms",
                    patterm=p99,
                    comparison=p50,
                    comparison_name="p50, same run",
                    note=f"p95 {p95:.1f} ms, {len(times)} requests, {rate:.1f} requests/s "
                    "over all actions",
                )
            )
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    write_figures(
        arguments.json,
        "load",
        figures,
        requests=len(results),
        requests_per_second=rate,
        sizes=arguments.sizes,
        bookings=len(booked_ids),
        median_ms=statistics.median([r[3] * 1000 for r in steady]) if steady else None,
        dropped_at_worker_kill=len(dropped_at_kill),
        json_503_during_outage=len(unavailable),
        problems=problems,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
