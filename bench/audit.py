"""Audit log throughput, integration delay, proofs and verification on PostgreSQL, against
comparisons from the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/audit.py
    ... bench/audit.py --writers 16 --appends 200 --verify-events 100000 1000000
    ... bench/audit.py --quick

Builds a throwaway database `bench_audit` and prints:

- appends per second with --writers concurrent writers, each staging --appends events, each
  in its own transaction, through `audit.services.event_append` (one INSERT, no shared lock);
  against the same rows inserted by raw SQL into a copy of the table, with the same writers.
  Each side runs twice, interleaved, and the faster run of each counts. An integrator runs
  meanwhile in its own process (as in production); the delay from each commit to its event's
  integration is reported (p50, p99). The tree is verified afterwards.
- inclusion proof time at the largest --proof-leaves against the smallest (O(log n) reads).
- verification speed: `chain_verify` (what `verify_audit` runs) over the first size of
  --verify-events (rows written with COPY, correct hashes), in events per second, against
  `COPY ... TO STDOUT` of the columns it reads plus the same hashing (the goal's comparison,
  decision 0018), the two alternating three times and the faster run of each counted; and
  against plain `hashlib.sha256` over the same canonical bytes, already in
  memory, and reading the same rows through the ORM without checking them.
- verification memory: the peak resident memory (VmHWM) of `manage.py verify_audit` in its own
  process at each size of --verify-events, as a ratio to the smallest.
"""

import argparse
import hashlib
import json
import multiprocessing
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

# Runs a script (argv[1:]) and writes its own peak resident memory (VmHWM) to stderr at exit.
OWN_PEAK = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        sys.stderr.write(next(line for line in status if line.startswith("VmHWM:")))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--appends", type=int, default=200, help="per writer")
    parser.add_argument(
        "--verify-events", type=int, nargs="+", default=[100_000, 1_000_000], help="chain sizes"
    )
    parser.add_argument(
        "--proof-leaves", type=int, nargs="+", default=[10_000, 1_000_000], help="tree sizes"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 appends per writer, logs of 5,000 and 20,000, proofs at 1,000 and 20,000",
    )
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.appends, arguments.verify_events = 20, [5_000, 20_000]
        arguments.proof_leaves = [1_000, 20_000]
    sizes = sorted(arguments.verify_events)

    django_on(DATABASE, "bench/audit.py")
    from django.db import connection, transaction
    from django.utils import timezone

    from audit import tlog, triggers
    from audit.chain import HASHED_FIELDS, canonical_json
    from audit.integrator import integrate_batch, integrate_pending, read_hashes
    from audit.models import AuditCheckpoint, AuditEvent, AuditTreeCheckpoint, AuditTreeHash
    from audit.services import chain_verify, event_append
    from audit.verify_export import TreeBuilder

    total = arguments.writers * arguments.appends
    print(f"PostgreSQL {connection.pg_version // 10000}, database {DATABASE}")

    committed_at: dict[int, float] = {}
    integrated_at: dict[int, float] = {}

    def staged(_writer):
        for number in range(arguments.appends):
            event = event_append(
                action="bench.append", outcome="success", details={"n": number, "w": _writer}
            )
            committed_at[event.seq] = time.perf_counter()

    def integrate_meanwhile(stop, results) -> None:
        """The integrator in its own process, as `make run` and systemd run it (a thread here
        would take the writers' interpreter lock): (seq, integrated at) of every event."""
        from django.db import connection as own

        own.close()  # the parent's socket is not this process's
        integrated = []
        while not stop.is_set():
            batch = integrate_batch()
            now = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process
            integrated += [(seq, now) for seq, _ in batch]
            if not batch:
                time.sleep(0.1)  # the command's default --interval
        own.close()
        results.put(integrated)

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

    # Each side twice, interleaved, the faster run of each counted: on a loaded machine one
    # run alone moves by a third.
    chained_runs, unchained_runs = [], []
    for _ in range(2):
        unchained_runs.append(run_threads(arguments.writers, unchained))
        connection.close()
        fork = multiprocessing.get_context("fork")
        stop, results = fork.Event(), fork.Queue()
        integrator = fork.Process(target=integrate_meanwhile, args=(stop, results))
        integrator.start()
        chained_runs.append(run_threads(arguments.writers, staged))
        time.sleep(1)
        stop.set()
        integrated_at.update(results.get())
        integrator.join()
    chained_seconds, unchained_seconds = min(chained_runs), min(unchained_runs)
    integrate_pending()
    result = chain_verify()
    if not (result.ok and result.events_checked == 2 * total):
        raise SystemExit(f"the tree did not verify after the runs: {result}")
    delays = sorted(
        integrated_at[seq] - committed_at[seq] for seq in committed_at if seq in integrated_at
    )
    p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, len(delays) * 99 // 100)]

    chained_rate, unchained_rate = total / chained_seconds, total / unchained_seconds
    print(f"\nAppends, {arguments.writers} writers x {arguments.appends}, one transaction each:")
    print(f"{'':<36}{'appends/s':>12}{'x unchained':>14}")
    print(f"{'unchained INSERT (comparison)':<36}{unchained_rate:>12.1f}{1:>14.2f}")
    print(
        f"{'event_append (staged)':<36}{chained_rate:>12.1f}{chained_rate / unchained_rate:>14.2f}"
    )
    print(f"tree verified: {result.events_checked} events")
    print(
        f"commit to integrated ({len(delays)} events, integrator process polling every 0.1 s): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )

    figures = [
        Figure(
            name=f"staged append, {arguments.writers} writers",
            unit="appends/s",
            patterm=chained_rate,
            comparison=unchained_rate,
            comparison_name="unchained INSERT",
            goal=">= 0.6",
        ),
        Figure(
            name=f"commit-to-integrated delay p99, {arguments.writers} writers",
            unit="s",
            patterm=p99,
            comparison=1.0,
            comparison_name="the goal, 1 s",
            goal="<= 1",
        ),
        Figure(
            name=f"commit-to-integrated delay p50, {arguments.writers} writers",
            unit="s",
            patterm=p50,
            comparison=1.0,
            comparison_name="1 s",
        ),
    ]

    # --- verification and proofs -------------------------------------------------------------
    state = {"size": 0, "builder": TreeBuilder(), "stored": 0, "seq": 10**9}

    def reset() -> None:
        triggers.drop_all(connection)
        AuditTreeCheckpoint.objects.all().delete()
        AuditCheckpoint.objects.all().delete()
        AuditTreeHash.objects.all().delete()
        AuditEvent.objects.all().delete()
        triggers.install_all(connection)
        state.update(size=0, builder=TreeBuilder(), stored=0)

    def extend_chain(size: int) -> None:
        """Leaves up to `size` with COPY (events and tree hashes): a busy clinic's record reads."""
        now = timezone.now()
        triggers.drop_all(connection)
        builder = state["builder"]
        hashes = []
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            copy_sql = f"COPY audit_auditevent ({', '.join(HASHED_FIELDS)}, leaf_index) FROM STDIN"
            with raw.copy(copy_sql) as copy:
                for index in range(state["size"], size):
                    state["seq"] += 1
                    row = {
                        "seq": state["seq"],
                        "occurred_at": now,
                        "actor_id": index % 50,
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
                        "details": {"entries": index % 7, "bases": ["self"]},
                    }
                    hashes += builder.append(canonical_json(row).encode())
                    values = [row[c] for c in HASHED_FIELDS[:-1]]
                    copy.write_row([*values, json.dumps(row["details"]), index])
            with raw.copy("COPY audit_tree_hash (id, hash) FROM STDIN") as copy:
                for number, hashed in enumerate(hashes, state["stored"]):
                    copy.write_row([number, hashed])
            cursor.execute("ANALYZE audit_auditevent")
            cursor.execute("ANALYZE audit_tree_hash")
        state["stored"] += len(hashes)
        state["size"] = size
        triggers.install_all(connection)

    def verify_in_own_process() -> tuple[float, float, int]:
        """(seconds, peak resident MiB, events) of `manage.py verify_audit --json`.

        The peak is the process's own VmHWM, read by itself as it ends: the ru_maxrss that
        wait4 reports for a child includes this (large) bench process's resident memory at the
        fork before exec, which made the same verification measure 127 or 261 MiB depending on
        what the bench held at that moment."""
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", OWN_PEAK, str(ROOT / "manage.py"), "verify_audit", "--json"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "patterm.settings.test"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        output, errors = process.communicate()
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"verify_audit failed ({process.returncode}): {output[:300]!r}")
        peak_kib = int(errors.decode().rsplit("VmHWM:", 1)[1].split()[0])
        result = json.loads(output)
        return seconds, peak_kib / 1024, result["events_checked"]

    # Inclusion proofs: the same 200 random leaves' proofs at each size, through the service's
    # reader (one query of O(log n) primary keys per proof).
    import random

    proof_times = []
    reset()
    for size in sorted(arguments.proof_leaves):
        extend_chain(size)
        picks = [random.randrange(size) for _ in range(200)]
        started = time.perf_counter()
        for index in picks:
            tlog.inclusion_proof(index, size, read_hashes)
        proof_times.append((size, (time.perf_counter() - started) / len(picks)))
        print(f"inclusion proof at {size:,} leaves: {proof_times[-1][1] * 1000:.2f} ms")
    figures.append(
        Figure(
            name=f"inclusion proof, {proof_times[-1][0]:,} vs {proof_times[0][0]:,} leaves",
            unit="ms",
            patterm=proof_times[-1][1] * 1000,
            comparison=proof_times[0][1] * 1000,
            comparison_name=f"at {proof_times[0][0]:,} leaves",
            goal="<= 2",
        )
    )
    reset()

    extend_chain(sizes[0])

    # The floor: the same SHA-256 work over the same canonical bytes, already in memory, through
    # hashlib alone (a leaf hash per event, a node hash per event but one).
    rows = AuditEvent.objects.order_by("leaf_index").values(*HASHED_FIELDS)
    payloads = [canonical_json(row).encode() for row in rows.iterator(chunk_size=2000)]
    pair = hashlib.sha256(b"x").digest()
    started = time.perf_counter()
    for payload in payloads:
        hashlib.sha256(b"\x00" + payload).digest()
        hashlib.sha256(b"\x01" + pair + pair).digest()
    floor_seconds = time.perf_counter() - started
    del payloads

    started = time.perf_counter()
    for _ in AuditEvent.objects.order_by("seq").values().iterator(chunk_size=2000):
        pass
    read_seconds = time.perf_counter() - started

    # The streaming floor: PostgreSQL sending the same rows as fast as it can (COPY ... TO, the
    # columns verification reads), each row's bytes hashed as a leaf and once more as a node.
    # No verifier that reads the database can beat reading it; the in-memory floor above leaves
    # the reading out (decision 0018).
    from audit.services import _STREAMED_COLUMNS

    sha256 = hashlib.sha256

    def verified() -> tuple[float, object]:
        started = time.perf_counter()
        result = chain_verify()
        seconds = time.perf_counter() - started
        if not (result.ok and result.events_checked == sizes[0]):
            raise SystemExit(f"the bulk chain did not verify: {result}")
        return seconds, result

    def copied() -> float:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            copy_sql = (
                f"COPY (SELECT {_STREAMED_COLUMNS['postgresql']} FROM audit_auditevent "
                "ORDER BY leaf_index) TO STDOUT"
            )
            count, rest = 0, b""
            with cursor.cursor.copy(copy_sql) as copy:
                for block in copy:
                    lines = (rest + bytes(block)).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        sha256(b"\x01" + pair + sha256(b"\x00" + line).digest()).digest()
                    count += len(lines)
        if count != sizes[0]:
            raise SystemExit(f"COPY gave {count} rows of {sizes[0]}")
        return time.perf_counter() - started

    # Three rounds, verification and its COPY comparison alternating, the faster run of each
    # counted (as the appends above): one run of either takes a second or two, and on the
    # shared machine the load moves more than that between two runs.
    verify_runs, copy_runs = [], []
    for _ in range(3):
        seconds, result = verified()
        verify_runs.append(seconds)
        copy_runs.append(copied())
    verify_seconds, copy_seconds = min(verify_runs), min(copy_runs)
    verify_rate = sizes[0] / verify_seconds
    floor_rate, read_rate = sizes[0] / floor_seconds, sizes[0] / read_seconds
    copy_rate = sizes[0] / copy_seconds
    print(f"\nVerification of {sizes[0]:,} events (ok={result.ok}):")
    print(f"{'':<40}{'events/s':>12}{'x floor':>10}{'x COPY':>10}")
    for name, rate in [
        ("hashlib.sha256 in memory (floor)", floor_rate),
        ("COPY ... TO + hashlib (stream floor)", copy_rate),
        ("reading the rows (ORM .values())", read_rate),
        ("chain_verify (tree)", verify_rate),
    ]:
        print(f"{name:<40}{rate:>12.0f}{rate / floor_rate:>10.2f}{rate / copy_rate:>10.2f}")
    figures.append(
        Figure(
            name=f"verification, {sizes[0]:,} events",
            unit="events/s",
            patterm=verify_rate,
            comparison=copy_rate,
            comparison_name="COPY TO of the same rows + hashlib",
            goal=">= 0.3",
        )
    )
    figures.append(
        Figure(
            name=f"verification, {sizes[0]:,} events, vs hashing in memory",
            unit="events/s",
            patterm=verify_rate,
            comparison=floor_rate,
            comparison_name="hashlib.sha256, same bytes, in memory",
            note="reading the rows alone is below 0.3x of this floor (decision 0018)",
        )
    )
    figures.append(
        Figure(
            name=f"verification, {sizes[0]:,} events, vs reading",
            unit="events/s",
            patterm=verify_rate,
            comparison=read_rate,
            comparison_name="reading the rows (ORM)",
        )
    )
    if figures[-3].met is False:
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
    # The sizes measured at, for run.py's summary line beside the figures.
    measured_at = {
        "writers": arguments.writers,
        "appends": arguments.appends,
        "verify_events": sizes,
        "proof_leaves": sorted(arguments.proof_leaves),
    }
    write_figures(arguments.json, "audit", figures, sizes=measured_at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
