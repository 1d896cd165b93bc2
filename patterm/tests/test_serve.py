"""`make run`'s server under 200 simultaneous clients (issue 18): runserver's listen queue reset
8 of 40 patients' connections. The test starts the same command as `make run` (manage.py serve:
honcho, gunicorn, the development settings) on the SQLite test database, fires 200 bookings and
200 searches at once, and ends the runner with SIGTERM: no 5xx, no reset, every slot booked once,
no process left behind."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from booking.models import Appointment
from booking.tests.factories import practitioner_create, slot_create

CLIENTS = 200
SLOTS = 20
PORT = int(os.environ.get("PATTERM_SERVE_TEST_PORT", "19250"))


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def request(method, path, body=None, token=None):
    connection_ = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    try:
        connection_.request(method, path, json.dumps(body) if body else None, headers)
        response = connection_.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection_.close()


@pytest.mark.requires_sqlite_file
@pytest.mark.django_db(transaction=True)
def test_make_run_holds_200_simultaneous_clients(make_patient):
    practitioner = practitioner_create()
    slots = [slot_create(practitioner=practitioner) for _ in range(SLOTS)]
    tokens = [make_patient().raw for _ in range(CLIENTS)]
    connection.close()  # the server's processes write to the file now
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "patterm.settings.base",
        "DATABASE_URL": f"sqlite:///{settings.DATABASES['default']['NAME']}",
    }
    runner = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "serve", "--port", str(PORT)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "make run's server did not answer in 60 s"
            assert runner.poll() is None, "make run's server stopped at start"
            time.sleep(0.2)
        started_processes = descendants(runner.pid)

        barrier = threading.Barrier(CLIENTS)
        results, resets = [], []

        def client(number: int):
            barrier.wait()
            for method, path, body in (
                ("POST", "/api/appointments", {"slot_id": slots[number % SLOTS].public_id}),
                ("GET", "/api/slots?city=Berlin&limit=20", None),
            ):
                try:
                    results.append((path, *request(method, path, body, tokens[number])))
                except (ConnectionError, http.client.HTTPException, OSError) as error:
                    resets.append(repr(error))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=30)
        time.sleep(0.5)

    latencies = sorted(seconds for _, _, seconds in results)
    server_errors = [r for r in results if r[1] >= 500]
    booked = [r for r in results if r[0] == "/api/appointments" and r[1] == 201]
    print(
        f"\n{len(results)} requests from {CLIENTS} clients in {elapsed:.1f} s: "
        f"{len(server_errors)} 5xx, {len(resets)} resets, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms"
    )
    assert not resets, resets[:5]
    assert not server_errors, server_errors[:5]
    assert len(results) == 2 * CLIENTS
    assert {status for _, status, _ in results} <= {200, 201, 409}
    assert len(booked) == SLOTS  # every slot once; the others 409 slot_taken
    assert Appointment.objects.count() == SLOTS
    assert started_processes, "the runner started no process"
    assert not [pid for pid in started_processes if alive(pid)], "processes left behind"
