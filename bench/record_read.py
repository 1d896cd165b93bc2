"""What encryption costs when a record page is read: Patterm's encrypted entries versus the same
entries in plain columns, measured side by side in one run.

    .venv/bin/python bench/record_read.py                 # SQLite file in var/, 50 entries
    .venv/bin/python bench/record_read.py --entries 200 --repeat 100
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/record_read.py

It builds a throwaway database (`var/bench-record.sqlite3`, or `bench_record` on the PostgreSQL
server of DATABASE_URL), one patient with N entries, and a throwaway model holding the same
entries in plain text columns. Three figures, each the median over --repeat reads:

- plain:      load N plain rows (with clinic and author) and touch title and body;
- decrypted:  the same through the encrypted fields, one data key unwrap per read (as per
              request in production);
- audited:    `vault.services.record_read` as the API calls it: consent decision, the entries
              query, the count of hidden entries, the chained audit row, and decryption.

Ratios are against `plain`, measured in the same run; absolute times on shared machines are noise.
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(database_url: str | None) -> None:
    if database_url:
        base, _, _name = database_url.rpartition("/")
        os.environ["DATABASE_URL"] = f"{base}/bench_record"
    else:
        bench_file = ROOT / "var" / "bench-record.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{bench_file}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{bench_file}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "patterm.settings.test")


def create_postgres_database(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bench_record")
        connection.execute("CREATE DATABASE bench_record")


def median_seconds(action, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    arguments = parser.parse_args()

    original_url = os.environ.get("DATABASE_URL")
    if original_url:
        create_postgres_database(original_url)
    configure(original_url)

    import django

    django.setup()

    from django.core.management import call_command
    from django.db import connection, models

    from accounts.models import Clinic, Membership, Role, User
    from accounts.services import ClientInfo
    from vault import keys
    from vault.models import RecordEntry
    from vault.services import patient_register, record_entry_create, record_read

    call_command("migrate", verbosity=0)

    class PlainEntry(models.Model):
        patient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        category = models.CharField(max_length=20)
        title = models.TextField()
        body = models.TextField()
        clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
        author = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        created_at = models.DateTimeField(auto_now_add=True)

        class Meta:
            app_label = "bench"
            db_table = "bench_plain_entry"

    with connection.schema_editor() as editor:
        editor.create_model(PlainEntry)

    clinic = Clinic.objects.create(name="Bench", slug="bench", city="Berlin", address="x")
    practitioner = User.objects.create(email="bench-doc@example.com", role=Role.PRACTITIONER)
    Membership.objects.create(user=practitioner, clinic=clinic, role=Role.PRACTITIONER)
    patient = patient_register(
        email="bench@example.com",
        password="Bench-Passwort-2026",
        first_name="Bench",
        last_name="Mark",
        date_of_birth=datetime.date(1980, 1, 1),
        client=ClientInfo(),
    ).user
    for number in range(arguments.entries):
        title, body = f"Diagnose {number}", "Befund " * 40
        record_entry_create(
            actor=practitioner,
            patient=patient,
            clinic=clinic,
            category="diagnosis",
            title=title,
            body=body,
        )
        PlainEntry.objects.create(
            patient=patient,
            category="diagnosis",
            title=title,
            body=body,
            clinic=clinic,
            author=practitioner,
        )

    def read_plain():
        for entry in PlainEntry.objects.filter(patient=patient).select_related("clinic", "author"):
            _ = (entry.title, entry.body, entry.clinic.name, entry.author.last_name)

    def read_decrypted():
        with keys.request_key_cache():
            entries = RecordEntry.objects.filter(patient=patient).select_related("clinic", "author")
            for entry in entries:
                _ = (entry.title, entry.body, entry.clinic.name, entry.author.last_name)

    def read_audited():
        with keys.request_key_cache():
            for entry in record_read(actor=patient, patient=patient).entries:
                _ = (entry.title, entry.body, entry.clinic.name, entry.author.last_name)

    for action in (read_plain, read_decrypted, read_audited):  # warm up
        action()
    plain = median_seconds(read_plain, arguments.repeat)
    decrypted = median_seconds(read_decrypted, arguments.repeat)
    audited = median_seconds(read_audited, arguments.repeat)

    print(
        f"Reading a {arguments.entries}-entry record on {connection.vendor}, "
        f"median of {arguments.repeat} reads:"
    )
    print(f"{'figure':<12}{'ms':>10}{'x plain':>10}")
    for name, seconds in (("plain", plain), ("decrypted", decrypted), ("audited", audited)):
        print(f"{name:<12}{seconds * 1000:>10.3f}{seconds / plain:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
