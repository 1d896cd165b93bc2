"""Audited writes and encrypted fields on PostgreSQL, against the packages a Django team would
otherwise use, measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/writes.py
    ... bench/writes.py --quick                       # small sizes, seconds
    ... bench/writes.py --writes 200 --rows 10000 --repeat 5

Needs requirements-bench.txt (the peers). Builds a throwaway database `bench_writes` and prints:

- audited write: `consent.services.consent_revoke` (row lock, update, chained audit event in the
  same transaction) against the same locked update of the same table with django-auditlog's
  unchained `LogEntry` written by its signal (it reads the old row to diff it), with 1 and with
  16 concurrent writers, each revoking --writes consents. Time per write = wall time / writes.
- encrypted field: bulk save and then load of --rows rows with three encrypted text fields
  (AES-256-GCM under 100 patients' data keys, bound to table, column, patient and row) against
  the same rows in django-fernet-encrypted-fields' Fernet fields, and in plain text fields.
  --repeat rounds, each saving and loading all three in a rotating order (the last round's rows
  deleted before, outside the timing); each figure is the median of the rounds' ratios.
"""

import argparse
import datetime
import sys
import uuid
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

DATABASE = "bench_writes"
PATIENTS = 100
# Issue 17: saving must cost no more than 0.8x the Fernet peer's, loading 0.6x.
GOALS = {"save": "<= 0.8", "load": "<= 0.6"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--writes", type=int, default=200, help="consents revoked per writer")
    parser.add_argument("--rows", type=int, default=10_000, help="rows saved and loaded")
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds of save and load (median of ratios)"
    )
    parser.add_argument("--quick", action="store_true", help="20 writes, 1,000 rows, 1 run")
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.writes, arguments.rows, arguments.repeat = 20, 1_000, 1
    sizes = {
        "writers": arguments.writers,
        "writes per writer": arguments.writes,
        "rows x 3 fields": arguments.rows,
        "rounds (median)": arguments.repeat,
    }
    print("sizes: " + ", ".join(f"{name} {value}" for name, value in sizes.items()), flush=True)

    django_on(DATABASE, "bench/writes.py")
    from auditlog.context import disable_auditlog
    from auditlog.models import LogEntry
    from auditlog.registry import auditlog
    from django.db import connection, models, transaction
    from django.utils import timezone
    from encrypted_fields.fields import EncryptedTextField as FernetTextField

    from accounts.models import Clinic, Role, User
    from audit.models import AuditEvent
    from audit.services import chain_verify
    from consent.models import Consent
    from consent.services import consent_revoke
    from vault import keys
    from vault.fields import EncryptedTextField

    print(f"PostgreSQL {connection.pg_version // 10000}, database {DATABASE}")
    figures: list[Figure] = []

    # --- audited write ---------------------------------------------------------------------
    clinic = Clinic.objects.create(name="Bench", slug="bench", city="Berlin", address="x")
    most = max(arguments.writers)
    patients = User.objects.bulk_create(
        User(email=f"w{n}@bench.de", role=Role.PATIENT, last_name=f"W{n}", password="!")
        for n in range(most)
    )
    auditlog.register(Consent, include_fields=["revoked_at"])

    def consents(count_per_writer: int, writers: int) -> list[list]:
        rows = [
            [
                Consent(
                    patient=patients[w],
                    grantee_clinic=clinic,
                    categories=["diagnosis"],
                    valid_from=datetime.date(2026, 1, 1),
                )
                for _ in range(count_per_writer)
            ]
            for w in range(writers)
        ]
        Consent.objects.bulk_create([c for per_writer in rows for c in per_writer])
        return [[c.pk for c in per_writer] for per_writer in rows]

    def patterm_write(patient, consent_id):
        with disable_auditlog():
            consent_revoke(patient=patient, consent_id=consent_id)

    def auditlog_write(patient, consent_id):
        with transaction.atomic():
            consent = Consent.objects.select_for_update().filter(pk=consent_id, patient=patient)
            consent = consent.first()
            consent.revoked_at = timezone.now()
            consent.save(update_fields=["revoked_at"])

    for writers in arguments.writers:
        seconds = {}
        for name, write in (("auditlog", auditlog_write), ("patterm", patterm_write)):
            ids = consents(arguments.writes, writers)

            def work(writer, ids=ids, write=write):
                for consent_id in ids[writer]:
                    write(patients[writer], consent_id)

            seconds[name] = run_threads(writers, work)
        total = writers * arguments.writes
        patterm_ms = seconds["patterm"] / total * 1000
        auditlog_ms = seconds["auditlog"] / total * 1000
        figures.append(
            Figure(
                name=f"audited write, {writers} writer{'s' if writers > 1 else ''}",
                unit="ms/write",
                patterm=patterm_ms,
                comparison=auditlog_ms,
                comparison_name="django-auditlog LogEntry",
                goal="<= 1.5",
            )
        )
        print(
            f"audited write, {writers} writers x {arguments.writes}: consent_revoke "
            f"{patterm_ms:.3f} ms/write, auditlog {auditlog_ms:.3f} ms/write, "
            f"ratio {patterm_ms / auditlog_ms:.2f}"
        )
    revoked = Consent.objects.exclude(revoked_at=None).count()
    expected = sum(arguments.writers) * arguments.writes
    log_entries = LogEntry.objects.count()
    events = AuditEvent.objects.filter(action="consent.revoke").count()
    if not (revoked == 2 * expected and log_entries == expected and events == expected):
        raise SystemExit(
            f"lost writes: {revoked} revoked, {log_entries} log entries, {events} audit events"
        )
    result = chain_verify()
    if not result.ok:
        raise SystemExit(f"the chain did not verify after the writes: {result}")
    missed = [f for f in figures if f.met is False]
    if missed and arguments.profile_dir:
        ids = consents(arguments.writes, 1)
        profile_to(
            f"{arguments.profile_dir}/audited-write.txt",
            lambda: [patterm_write(patients[0], i) for i in ids[0]],
        )

    # --- encrypted field ---------------------------------------------------------------------
    class PattermRow(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        patient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        first = EncryptedTextField(patient_field="patient")
        second = EncryptedTextField(patient_field="patient")
        third = EncryptedTextField(patient_field="patient")

        class Meta:
            app_label = "bench"
            db_table = "bench_patterm_row"

    class FernetRow(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        patient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        first = FernetTextField()
        second = FernetTextField()
        third = FernetTextField()

        class Meta:
            app_label = "bench"
            db_table = "bench_fernet_row"

    class PlainRow(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        patient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        first = models.TextField()
        second = models.TextField()
        third = models.TextField()

        class Meta:
            app_label = "bench"
            db_table = "bench_plain_row"

    with connection.schema_editor() as editor:
        for model in (PattermRow, FernetRow, PlainRow):
            editor.create_model(model)
    owners = User.objects.bulk_create(
        User(email=f"e{n}@bench.de", role=Role.PATIENT, last_name=f"E{n}", password="!")
        for n in range(PATIENTS)
    )
    for owner in owners:
        keys.data_key_create(patient_id=owner.pk)
    owner_ids = [owner.pk for owner in owners]
    texts = ("Diagnose J06.9 akuter Infekt", "Befund: " + "unauffällig " * 20, "Plan: Kontrolle")
    FernetRow(patient=owners[0], first="warm", second="up", third="!").save()  # derive its key
    FernetRow.objects.all().delete()

    def save(model):
        def action():
            with keys.request_key_cache():
                keys.data_keys_preload(owner_ids)
                model.objects.bulk_create(
                    (
                        model(
                            patient_id=owner_ids[n % PATIENTS],
                            first=texts[0],
                            second=texts[1],
                            third=texts[2],
                        )
                        for n in range(arguments.rows)
                    ),
                    batch_size=1000,
                )

        return action

    def load(model):
        def action():
            with keys.request_key_cache():
                keys.data_keys_preload(owner_ids)
                for row in model.objects.all().iterator(chunk_size=2000):
                    if not (row.first == texts[0] and row.third == texts[2] and row.second):
                        raise SystemExit(f"{model.__name__} read back the wrong text")

        return action

    # Interleaved: each round saves and loads every model once, in a rotating order, so that a
    # change of the machine's load during the run falls on all three alike; medians per model.
    import statistics
    import time

    # The figures are the medians of each round's ratios (the times shown, medians per model).
    models_ = [PlainRow, FernetRow, PattermRow]
    runs = {model: ([], []) for model in models_}
    for round_ in range(arguments.repeat):
        for model in models_[round_ % 3 :] + models_[: round_ % 3]:
            model.objects.all().delete()  # the last round's rows, outside the timing
            for index, action in enumerate((save(model), load(model))):
                started = time.perf_counter()
                action()
                runs[model][index].append(time.perf_counter() - started)
            if model.objects.count() != arguments.rows:
                raise SystemExit(f"{model.__name__}: rows lost")
    timings = {
        model: (statistics.median(saves), statistics.median(loads))
        for model, (saves, loads) in runs.items()
    }

    def paired(index: int, comparison) -> float:
        return statistics.median(
            ours / theirs
            for ours, theirs in zip(runs[PattermRow][index], runs[comparison][index], strict=True)
        )

    for what, index in (("save", 0), ("load", 1)):
        patterm_ms = timings[PattermRow][index] * 1000
        fernet_ms = timings[FernetRow][index] * 1000
        plain_ms = timings[PlainRow][index] * 1000
        figures.append(
            Figure(
                name=f"encrypted field: {what} {arguments.rows:,} rows x 3 fields",
                unit="ms",
                patterm=patterm_ms,
                comparison=fernet_ms,
                comparison_name="django-fernet-encrypted-fields",
                goal=GOALS[what],
                paired_ratio=paired(index, FernetRow),
            )
        )
        figures.append(
            Figure(
                name=f"encrypted field: {what} {arguments.rows:,} rows, vs plain text",
                unit="ms",
                patterm=patterm_ms,
                comparison=plain_ms,
                comparison_name="plain TextField",
                paired_ratio=paired(index, PlainRow),
            )
        )
        print(
            f"encrypted field, {what} {arguments.rows} rows: Patterm {patterm_ms:.1f} ms, "
            f"Fernet {fernet_ms:.1f} ms, plain {plain_ms:.1f} ms; per round vs Fernet "
            f"{paired(index, FernetRow):.2f}x (median of "
            + ", ".join(
                f"{ours / theirs:.2f}"
                for ours, theirs in zip(
                    *(runs[m][index] for m in (PattermRow, FernetRow)), strict=True
                )
            )
            + ")"
        )
    missed = [f for f in figures[-4:] if f.met is False]
    if missed and arguments.profile_dir:
        profile_to(f"{arguments.profile_dir}/encrypted-field-save.txt", save(PattermRow))
        profile_to(f"{arguments.profile_dir}/encrypted-field-load.txt", load(PattermRow))

    write_figures(arguments.json, "writes", figures, sizes=sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
