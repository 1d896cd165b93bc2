"""A4: many writers appending at once still build one unbroken chain, on PostgreSQL (advisory
lock) and on the file SQLite database (BEGIN IMMEDIATE). Real transactions and one connection
per thread: an in-memory database or a wrapping test transaction would hide the race."""

import threading
from collections import defaultdict
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from audit.models import AuditAction, AuditEvent, Outcome
from audit.services import chain_verify, event_append

THREADS = 16
APPENDS_PER_THREAD = 200  # SECURITY.md A4: 16 x 200
TOTAL = THREADS * APPENDS_PER_THREAD


def append_many(thread_number: int, barrier: threading.Barrier, errors: list) -> None:
    try:
        connection.ensure_connection()  # connected first, the threads then append together
        barrier.wait(timeout=60)
        for index in range(APPENDS_PER_THREAD):
            with transaction.atomic():
                event_append(
                    action=AuditAction.AUTH_LOGIN,
                    outcome=Outcome.SUCCESS,
                    object_type="thread",
                    object_id=f"{thread_number}-{index}",
                    details={"thread": thread_number, "index": index},
                )
    except BaseException as error:  # reported by the test, which runs in another thread
        errors.append(error)
        barrier.abort()
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
def test_concurrent_appends_build_one_unbroken_chain(vendor):
    assert connection.vendor == vendor
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=append_many, args=(number, barrier, errors))
        for number in range(THREADS)
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads), "appends did not finish"
    assert errors == []
    rows = list(AuditEvent.objects.order_by("seq").values("seq", "prev_hash", "details"))
    assert len(rows) == TOTAL
    assert [row["seq"] for row in rows] == list(range(1, TOTAL + 1))
    assert len({row["prev_hash"] for row in rows}) == TOTAL
    # Every append landed once, and each thread's appends in the order it made them.
    seqs_by_thread = defaultdict(list)
    for row in rows:
        seqs_by_thread[row["details"]["thread"]].append((row["details"]["index"], row["seq"]))
    assert sorted(seqs_by_thread) == list(range(THREADS))
    for appended in seqs_by_thread.values():
        assert [index for index, _ in appended] == list(range(APPENDS_PER_THREAD))
    result = chain_verify()
    assert (result.ok, result.events_checked, result.head_seq) == (True, TOTAL, TOTAL)
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert f"intact: {TOTAL} events" in out.getvalue()
