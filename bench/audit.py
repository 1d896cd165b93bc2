"""Audit chain throughput and verification on PostgreSQL, against comparisons from the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/audit.py
    ... bench/audit.py --writers 16 --appends 200 --verify-events 100000 1000000
    ... bench/audit.py --quick

Builds a throwaway database `bench_audit` and prints:

- appends per second with --writers concurrent writers, each appending --appends events, each
  in its own transaction, through `audit.services.event_append` (advisory lock, head read,
  hash, insert); against the same rows inserted unchained (no lock, no head read) into a copy
  of the table, with the same writers. The chain is verified afterwards.
- verification speed: `chain_verify` (what `verify_audit` runs) over the first size of
  --verify-events (rows written with COPY, correct hashes), in events per second, against the
  floor: plain `hashlib.sha256` over the same canonical bytes, already in memory; and against
  reading the same rows without checking them.
- verification memory: the peak resident memory of `manage.py verify_audit` (its own process)
  at each size of --verify-events, as a ratio to the smallest.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Figure,
    add_output_arguments,
    django_on,
    profile_to,
    run_threads,
    write_figures,
)

DATABASE = "bench_audit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--appends", type=int, default=200, help="per writer")
    parser.add_argument(
        "--verify-events", type=int, nargs="+", default=[100_000, 1_000_000], help="chain sizes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="20 appends per writer, chains of 5,000 and 20,000"
    )
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.appends, arguments.verify_events = 20, [5_000, 20_000]
    sizes = sorted(arguments.verify_events)

    django_on(DATABASE, "bench/audit.py")
    from django.db import connection, transaction
    from django.utils import timezone

    from audit import triggers
    from audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_json, chain_hash
    from audit.models import AuditCheckpoint, AuditEvent
    from audit.services import chain_verify, event_append

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

    figures = [
        Figure(
            name=f"chained append, {arguments.writers} writers",
            unit="appends/s",
            patterm=chained_rate,
            comparison=unchained_rate,
            comparison_name="unchained INSERT",
        )
    ]

    # --- verification ------------------------------------------------------------------------
    triggers.drop_all(connection)  # start again: a fresh chain without the checkpoints above
    AuditCheckpoint.objects.all().delete()
    AuditEvent.objects.all().delete()
    triggers.install_all(connection)
    columns = [*HASHED_FIELDS, "prev_hash", "hash"]
    state = {"seq": 0, "prev": GENESIS_HASH}

    def extend_chain(size: int) -> None:
        """Append rows up to `size` with COPY: the shape of a busy clinic's record reads."""
        now = timezone.now()
        triggers.drop_all(connection)
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            copy_sql = f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN"
            with raw.copy(copy_sql) as copy:
                for seq in range(state["seq"] + 1, size + 1):
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
                    digest = chain_hash(state["prev"], row)
                    values = [row[c] for c in HASHED_FIELDS[:-1]]
                    copy.write_row([*values, json.dumps(row["details"]), state["prev"], digest])
                    state["prev"] = digest
            cursor.execute("ANALYZE audit_auditevent")
        state["seq"] = size
        triggers.install_all(connection)

    def verify_in_own_process() -> tuple[float, float, int]:
        """(seconds, peak resident MiB, events) of `manage.py verify_audit --json`."""
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "verify_audit", "--json"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"},
            stdout=subprocess.PIPE,
        )
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"verify_audit failed ({process.returncode}): {output[:300]!r}")
        result = json.loads(output)
        # verify_audit audits itself: one more row on the chain, which the next COPY follows.
        state["seq"], state["prev"] = AuditEvent.objects.order_by("-seq").values_list(
            "seq", "hash"
        )[0]
        return seconds, usage.ru_maxrss / 1024, result["events_checked"]

    extend_chain(sizes[0])
    started = time.perf_counter()
    result = chain_verify()
    verify_seconds = time.perf_counter() - started
    if not (result.ok and result.events_checked == sizes[0]):
        raise SystemExit(f"the bulk chain did not verify: {result}")

    # The floor: the same canonical bytes, already in memory, through hashlib alone.
    rows = AuditEvent.objects.order_by("seq").values(*HASHED_FIELDS, "prev_hash")
    payloads = [
        (row["prev_hash"] + canonical_json(row)).encode() for row in rows.iterator(chunk_size=2000)
    ]
    started = time.perf_counter()
    for payload in payloads:
        hashlib.sha256(payload).hexdigest()
    floor_seconds = time.perf_counter() - started
    del payloads

    started = time.perf_counter()
    for _ in AuditEvent.objects.order_by("seq").values().iterator(chunk_size=2000):
        pass
    read_seconds = time.perf_counter() - started
    verify_rate = sizes[0] / verify_seconds
    floor_rate, read_rate = sizes[0] / floor_seconds, sizes[0] / read_seconds
    print(f"\nVerification of {sizes[0]:,} events (ok={result.ok}):")
    print(f"{'':<36}{'events/s':>12}{'x floor':>14}")
    print(f"{'hashlib.sha256 in memory (floor)':<36}{floor_rate:>12.0f}{1:>14.2f}")
    print(f"{'reading the rows':<36}{read_rate:>12.0f}{read_rate / floor_rate:>14.2f}")
    print(f"{'chain_verify':<36}{verify_rate:>12.0f}{verify_rate / floor_rate:>14.2f}")
    figures.append(
        Figure(
            name=f"verification, {sizes[0]:,} events",
            unit="events/s",
            patterm=verify_rate,
            comparison=floor_rate,
            comparison_name="hashlib.sha256, same bytes",
            goal=">= 0.5",
        )
    )
    figures.append(
        Figure(
            name=f"verification, {sizes[0]:,} events, vs reading",
            unit="events/s",
            patterm=verify_rate,
            comparison=read_rate,
            comparison_name="reading the rows",
        )
    )
    if figures[-2].met is False:
        profile_to(
            arguments.profile_dir and f"{arguments.profile_dir}/verification.txt", chain_verify
        )

    memory = []
    for size in sizes:
        extend_chain(size)
        seconds, peak_mib, checked = verify_in_own_process()
        if checked != size:
            raise SystemExit(f"verify_audit checked {checked} of {size} events")
        memory.append((size, peak_mib, seconds))
        print(f"verify_audit over {size:,} events: {seconds:.1f} s, peak {peak_mib:.0f} MiB")
    figures.append(
        Figure(
            name=f"verify_audit peak memory, {sizes[-1]:,} vs {sizes[0]:,} events",
            unit="MiB",
            patterm=memory[-1][1],
            comparison=memory[0][1],
            comparison_name=f"at {sizes[0]:,} events",
            goal="<= 1.2",
            scaling=[
                {
                    "label": "verify_audit peak RSS",
                    "x": "events",
                    "points": [[size, peak] for size, peak, _ in memory],
                }
            ],
        )
    )
    write_figures(arguments.json, "audit", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
