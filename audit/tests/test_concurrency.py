"""A4 and the integrator's hazards, with real transactions and one connection per thread (an
in-memory database or a wrapping test transaction would hide the race): 16 writers x 200 staged
events, then integration (every committed event exactly once, leaves contiguous, the tree
verifies); rolled-back events never appear; commits out of seq order; an integrator killed
mid-batch and restarted; two integrators at once."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit.integrator import integrate_batch, integrate_pending, process_lock_release
from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import chain_verify, event_append

THREADS = 16
APPENDS_PER_THREAD = 200  # SECURITY.md A4: 16 x 200
TOTAL = THREADS * APPENDS_PER_THREAD


def append_many(thread_number: int, barrier: threading.Barrier, errors: list) -> None:
    try:
        connection.ensure_connection()
        barrier.wait(timeout=60)
        for index in range(APPENDS_PER_THREAD):
            if index % 50 == 49:  # every 50th transaction rolls back: a gap in seq
                try:
                    with transaction.atomic():
                        event_append(action="test.rolled_back", outcome=Outcome.FAILURE)
                        raise RuntimeError("rolled back")
                except RuntimeError:
                    pass
            with transaction.atomic():
                event_append(
                    action=AuditAction.AUTH_LOGIN,
                    outcome=Outcome.SUCCESS,
                    object_type="thread",
                    object_id=f"{thread_number}-{index}",
                    details={"thread": thread_number, "index": index},
                )
    except BaseException as error:
        errors.append(error)
        barrier.abort()
    finally:
        connection.close()


def integrate_while(stop: threading.Event, errors: list) -> None:
    try:
        while not stop.is_set():
            if not integrate_batch(limit=500):
                time.sleep(0.01)
        integrate_pending()
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "vendor",
    [
        pytest.param("postgresql", marks=pytest.mark.requires_postgresql),
        pytest.param("sqlite", marks=pytest.mark.requires_sqlite_file),
    ],
)
def test_16_writers_stage_and_the_integrator_makes_each_event_one_leaf(vendor):
    assert connection.vendor == vendor
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    stop = threading.Event()
    # PostgreSQL: a live integrator beside the writers. SQLite: each transaction integrates its
    # own events after its commit (PATTERM_AUDIT_INTEGRATE_INLINE), under the one write lock.
    integrator = threading.Thread(target=integrate_while, args=(stop, errors))
    if vendor == "postgresql":
        integrator.start()
    threads = [
        threading.Thread(target=append_many, args=(number, barrier, errors))
        for number in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stop.set()
    if vendor == "postgresql":
        integrator.join(timeout=120)

    assert not any(thread.is_alive() for thread in [*threads, integrator])
    assert errors == []
    integrate_pending()
    rows = list(AuditEvent.objects.order_by("leaf_index").values("leaf_index", "action", "details"))
    assert len(rows) == TOTAL
    assert [row["leaf_index"] for row in rows] == list(range(TOTAL))
    assert not any(row["action"] == "test.rolled_back" for row in rows)
    landed = Counter((row["details"]["thread"], row["details"]["index"]) for row in rows)
    assert set(landed.values()) == {1}
    assert len(landed) == TOTAL
    result = chain_verify()
    assert (result.ok, result.events_checked, result.staged_events) == (True, TOTAL, 0)
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert f"intact: {TOTAL} events" in out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.requires_postgresql
def test_an_event_committed_after_a_later_numbered_one_is_integrated_exactly_once():
    started, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                event_append(action="test.slow", outcome=Outcome.SUCCESS)
                started.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    started.wait(timeout=30)
    fast = event_append(action="test.fast", outcome=Outcome.SUCCESS)
    assert integrate_pending() == 1  # the slow one is not committed: invisible, not waited for
    release.set()
    writer.join(timeout=30)
    assert integrate_pending() == 1

    slow = AuditEvent.objects.get(action="test.slow")
    fast.refresh_from_db()
    assert slow.seq < fast.seq
    assert (fast.leaf_index, slow.leaf_index) == (0, 1)
    assert chain_verify().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.requires_postgresql
def test_two_integrators_at_once_one_refuses_with_a_message():
    from audit.integrator import process_lock_try

    assert process_lock_try()
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"}
        env["DATABASE_URL"] = _test_database_url()
        second = subprocess.run(
            [sys.executable, "manage.py", "audit_integrate"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        process_lock_release()
    assert second.returncode == 1
    assert "Another audit integrator is running" in second.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.requires_postgresql
def test_an_integrator_killed_mid_batch_loses_nothing_and_integrates_nothing_twice():
    for index in range(3000):
        event_append(action="test.bulk", outcome=Outcome.SUCCESS, details={"n": index})
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"}
    env["DATABASE_URL"] = _test_database_url()
    # One batch of everything: the kill lands while its transaction is open.
    process = subprocess.Popen(
        [sys.executable, "manage.py", "audit_integrate", "--batch-size", "3000"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _integrator_in_transaction():
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.2)  # the server notices the dead backend and rolls its transaction back
    done_before_restart = AuditEvent.objects.exclude(leaf_index=None).count()
    assert done_before_restart in (0, 3000)  # a batch is all or nothing

    call_command("audit_integrate", "--once", stdout=StringIO())

    leaves = list(AuditEvent.objects.order_by("leaf_index").values_list("leaf_index", flat=True))
    assert leaves == list(range(3000))
    assert chain_verify().ok


def _integrator_in_transaction() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
            [0x65726D02],
        )
        return cursor.fetchone()[0] > 0


def _test_database_url() -> str:
    database = settings.DATABASES["default"]
    return (
        f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def test_integrate_once_reports_what_it_did(db):
    event_append(action="test.one", outcome=Outcome.SUCCESS)
    out = StringIO()
    call_command("audit_integrate", "--once", stdout=out)
    assert "Integrated 1 events; the tree has 1 leaves, 0 events are staged" in out.getvalue()
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("audit_integrate", "--once", "--batch-size", "0")
