"""Audit chain throughput on PostgreSQL, against comparisons from the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/audit.py
    ... bench/audit.py --writers 16 --appends 200 --verify-events 100000
    ... bench/audit.py --quick

Builds a throwaway database `bench_audit` and prints:

- appends per second with --writers concurrent writers, each appending --appends events, each
  in its own transaction, through `audit.services.event_append` (advisory lock, head read,
  hash, insert); against the same rows inserted unchained (no lock, no head read) through the
  ORM into a copy of the table, with the same writers. The chain is verified afterwards.
- verification speed: `chain_verify` over --verify-events events (rows inserted in bulk with
  correct hashes), in events per second, against reading the same rows without checking them.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import recreate_database, run_threads  # noqa: E402

DATABASE = "bench_audit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--appends", type=int, default=200, help="per writer")
    parser.add_argument("--verify-events", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="50 appends per writer, 10,000 rows")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.appends, arguments.verify_events = 50, 10_000

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("bench/audit.py measures PostgreSQL: set DATABASE_URL=postgres://...")
        return 2
    os.environ["DATABASE_URL"] = recreate_database(url, DATABASE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patterm.settings.test")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from audit import triggers
    from audit.chain import GENESIS_HASH, chain_hash
    from audit.models import AuditCheckpoint, AuditEvent
    from audit.services import chain_verify, event_append

    call_command("migrate", verbosity=0)
    total = arguments.writers * arguments.appends
    print(f"PostgreSQL {connection.pg_version // 10000}, database {DATABASE}")

    def chained(_writer):
        for number in range(arguments.appends):
            event_append(
                action="bench.append", outcome="success", details={"n": number, "w": _writer}
            )

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_unchained (LIKE audit_auditevent INCLUDING DEFAULTS)")
        cursor.execute("ALTER TABLE bench_unchained DROP CONSTRAINT IF EXISTS bench_unchained_pkey")
        cursor.execute("CREATE SEQUENCE bench_unchained_seq")

    def unchained(_writer):
        from django.db import connection as thread_connection

        for number in range(arguments.appends):
            with transaction.atomic(), thread_connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO bench_unchained (seq, occurred_at, actor_role, action,"
                    " object_type, object_id, subject_ref, purpose, outcome, request_id,"
                    " details, prev_hash, hash) VALUES (nextval('bench_unchained_seq'), %s,"
                    " '', 'bench.append', '', '', '', '', 'success', '', %s, '',"
                    " md5(random()::text))",
                    [timezone.now(), f'{{"n": {number}, "w": {_writer}}}'],
                )

    chained_seconds = run_threads(arguments.writers, chained)
    unchained_seconds = run_threads(arguments.writers, unchained)
    result = chain_verify()
    if not (result.ok and result.events_checked == total):
        raise SystemExit(f"the chain did not verify after the run: {result}")

    chained_rate, unchained_rate = total / chained_seconds, total / unchained_seconds
    print(f"\nAppends, {arguments.writers} writers x {arguments.appends}, one transaction each:")
    print(f"{'':<36}{'appends/s':>12}{'x unchained':>14}")
    print(f"{'unchained INSERT (comparison)':<36}{unchained_rate:>12.1f}{1:>14.2f}")
    print(
        f"{'event_append (chained, serialised)':<36}{chained_rate:>12.1f}"
        f"{chained_rate / unchained_rate:>14.2f}"
    )
    print(f"chain verified: {result.events_checked} events, no fork")

    # --- verification ------------------------------------------------------------------------
    triggers.drop_all(connection)  # start again: a fresh chain without the checkpoints above
    AuditCheckpoint.objects.all().delete()
    AuditEvent.objects.all().delete()
    prev, batch, now = GENESIS_HASH, [], timezone.now()
    for seq in range(1, arguments.verify_events + 1):
        row = {
            "seq": seq,
            "occurred_at": now,
            "actor_id": seq % 50,
            "actor_role": "patient",
            "action": "record.read",
            "object_type": "patient_record",
            "object_id": "",
            "subject_ref": "ab" * 16,
            "clinic_id": 1,
            "purpose": "treatment",
            "outcome": "success",
            "request_id": "r" * 32,
            "client_address": "10.0.0.1",
            "details": {"entries": seq % 7, "bases": ["self"]},
        }
        digest = chain_hash(prev, row)
        batch.append(AuditEvent(**row, prev_hash=prev, hash=digest))
        prev = digest
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    AuditEvent.objects.bulk_create(batch)
    triggers.install_all(connection)

    started = time.perf_counter()
    result = chain_verify()
    verify_seconds = time.perf_counter() - started
    if not (result.ok and result.events_checked == arguments.verify_events):
        raise SystemExit(f"the bulk chain did not verify: {result}")
    started = time.perf_counter()
    for _ in AuditEvent.objects.order_by("seq").values().iterator(chunk_size=2000):
        pass
    read_seconds = time.perf_counter() - started
    verify_rate = arguments.verify_events / verify_seconds
    read_rate = arguments.verify_events / read_seconds
    print(f"\nVerification of {arguments.verify_events:,} events (ok={result.ok}):")
    print(f"{'':<36}{'events/s':>12}{'x reading':>14}")
    print(f"{'reading the rows (comparison)':<36}{read_rate:>12.0f}{1:>14.2f}")
    print(f"{'chain_verify':<36}{verify_rate:>12.0f}{verify_rate / read_rate:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
