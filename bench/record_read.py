"""What encryption costs when a record page is read: Patterm's encrypted entries versus the same
entries in plain columns, measured side by side in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/record_read.py
    ... bench/record_read.py --entries 200 --repeat 100

It builds a throwaway database `bench_record` on the PostgreSQL server of DATABASE_URL, one
patient with N entries, and a throwaway model holding the same
entries in plain text columns. Each of --repeat rounds reads the page once in each of five
ways, in a rotating order, so that a change of the machine's load falls on all five alike:

- plain:      load N plain rows (with clinic and author) and touch title and body;
- decrypted:  the same through the encrypted fields, the patient's data key brought by the
              entries' query and unwrapped once per read (as `record_read` does per request);
- audited:    `vault.services.record_read` as the API calls it: consent decision, the entries
              query (with the hidden entries' count when anything can be hidden), the staged
              audit row, and decryption;
- floor:      what any audited read costs at least: `plain`, then one INSERT of a row of the
              same size (the values of the audit row `audited` staged) into a table of the
              audit table's columns without any index, committed durably (autocommit: one
              round trip, the server's WAL flush included; decision 0023);
- floor_dec:  the same after `decrypted` instead of `plain`: the least an audited read of
              encrypted entries costs, so `audited` over it is what consent and the audit
              row's own work add.

The ratios are the median over the rounds of each round's ratio to `plain` or to `floor` (the
times shown are the medians of each way); absolute times on shared machines are noise.
"""

import argparse
import datetime
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Figure,
    add_output_arguments,
    django_on,
    profile_to,
    write_figures,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument(
        "--repeat", type=int, default=200, help="rounds, each reading the page in all five ways"
    )
    parser.add_argument(
        "--reader",
        choices=["patient", "practitioner"],
        default="patient",
        help="who reads through record_read: the patient (the whole record, the default) or a "
        "practitioner of the clinic that wrote it (own_clinic: policy queries, acting clinic)",
    )
    parser.add_argument("--quick", action="store_true", help="15 rounds")
    parser.add_argument("--profile-dir", help="write pyinstrument reports of missed goals here")
    add_output_arguments(parser)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.repeat = 15
    sizes = {"entries": arguments.entries, "rounds (median)": arguments.repeat}
    if arguments.reader != "patient":
        sizes["reader"] = arguments.reader
    print("sizes: " + ", ".join(f"{name} {value}" for name, value in sizes.items()), flush=True)

    django_on("bench_record", "bench/record_read.py")

    from django.db import connection, models
    from django.utils import timezone

    from accounts.models import Clinic, Membership, Role, User
    from accounts.services import ClientInfo
    from audit.chain import HASHED_FIELDS
    from audit.models import AuditAction
    from vault import keys
    from vault.models import RecordEntry
    from vault.services import patient_register, record_entry_create, record_read

    class PlainEntry(models.Model):
        """RecordEntry with its encrypted columns in clear and nothing else changed (the same
        key, columns, ordering and index), so that the ratio is what encryption costs."""

        id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
        patient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        category = models.CharField(max_length=20)
        title = models.TextField()
        body = models.TextField()
        code = models.TextField(null=True, blank=True)  # noqa: DJ001 (as RecordEntry.code)
        clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+")
        author = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
        created_at = models.DateTimeField(default=timezone.now)

        class Meta:
            app_label = "bench"
            db_table = "bench_plain_entry"
            ordering = ["-created_at"]
            indexes = [models.Index(fields=["patient", "clinic", "category", "created_at"])]

    with connection.schema_editor() as editor:
        editor.create_model(PlainEntry)

    clinic = Clinic.objects.create(name="Bench", slug="bench", city="Berlin", address="x")
    practitioner = User.objects.create(email="bench-doc@example.com", role=Role.PRACTITIONER)
    Membership.objects.create(user=practitioner, clinic=clinic, role=Role.PRACTITIONER)
    patient = patient_register(
        email="bench@example.com",
        password="Akten-Lesen-2026",
        first_name="Berta",
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
        with keys.request_key_cache():  # the page's query: the data key comes with it, one unwrap
            entries = list(
                keys.with_live_data_key(
                    RecordEntry.objects.filter(patient=patient), patient_id=patient.pk
                ).select_related("clinic", "author")
            )
            keys.data_keys_from_rows(entries)
            for entry in entries:
                _ = (entry.title, entry.body, entry.clinic.name, entry.author.last_name)

    reader = patient if arguments.reader == "patient" else practitioner

    def read_audited():
        with keys.request_key_cache():
            for entry in record_read(actor=reader, patient=patient).entries:
                _ = (entry.title, entry.body, entry.clinic.name, entry.author.last_name)

    read_audited()  # one audit row to copy: the floor writes a row of the same values
    columns = ", ".join(name for name in HASHED_FIELDS if name != "seq")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_audit_floor"
            " (LIKE audit_auditevent INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
        cursor.execute(
            f"SELECT {columns.replace('details', 'details::text')} FROM audit_auditevent"
            " WHERE action = %s ORDER BY seq DESC LIMIT 1",
            [AuditAction.RECORD_READ],
        )
        audit_row = cursor.fetchone()
    floor_insert = (
        f"INSERT INTO bench_audit_floor ({columns}) VALUES "
        f"({', '.join(['%s'] * (len(audit_row) - 1))}, %s::jsonb)"
    )

    def write_floor_row():
        with connection.cursor() as cursor:  # autocommit: the INSERT commits itself, durably
            cursor.execute(floor_insert, audit_row)

    def read_floor():
        read_plain()
        write_floor_row()

    def read_floor_decrypted():
        read_decrypted()
        write_floor_row()

    ways = {
        "plain": read_plain,
        "decrypted": read_decrypted,
        "audited": read_audited,
        "floor": read_floor,
        "floor_dec": read_floor_decrypted,
    }
    for action in ways.values():  # warm up
        action()
    timings = {name: [] for name in ways}
    names = list(ways)
    for round_ in range(arguments.repeat):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            started = time.perf_counter()
            ways[name]()
            timings[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(seconds) for name, seconds in timings.items()}

    def paired(name: str, base: str) -> float:
        return statistics.median(
            way / other for way, other in zip(timings[name], timings[base], strict=True)
        )

    ratios = {name: paired(name, "plain") for name in names}
    to_floor = {name: paired(name, "floor") for name in names}
    plain, decrypted, audited = medians["plain"], medians["decrypted"], medians["audited"]

    print(
        f"Reading a {arguments.entries}-entry record on {connection.vendor}, "
        f"{arguments.repeat} interleaved rounds:"
    )
    print(f"{'figure':<12}{'median ms':>10}{'x plain':>10}{'x floor':>10}  (medians of rounds)")
    for name in names:
        print(
            f"{name:<12}{medians[name] * 1000:>10.3f}{ratios[name]:>10.2f}{to_floor[name]:>10.2f}"
        )
    through = "through record_read" + (
        "" if arguments.reader == "patient" else f" by a {arguments.reader}"
    )
    figures = [
        Figure(
            name=f"record page: {arguments.entries} entries, decrypted",
            unit="ms",
            patterm=decrypted * 1000,
            comparison=plain * 1000,
            comparison_name="plain columns",
            goal="<= 1.3",
            paired_ratio=ratios["decrypted"],
        ),
        Figure(
            name=f"record page: {arguments.entries} entries, {through}",
            unit="ms",
            patterm=audited * 1000,
            comparison=plain * 1000,
            comparison_name="plain columns",
            note="consent decision, hidden-entry count and the staged audit row on top",
            paired_ratio=ratios["audited"],
        ),
        Figure(
            name=f"record page: {arguments.entries} entries, {through}, vs the floor",
            unit="ms",
            patterm=audited * 1000,
            comparison=medians["floor"] * 1000,
            comparison_name="plain columns + one durable INSERT of the audit row",
            goal="<= 1.3",
            paired_ratio=to_floor["audited"],
        ),
        Figure(
            name=f"record page: {arguments.entries} entries, floor of an audited read",
            unit="ms",
            patterm=medians["floor"] * 1000,
            comparison=plain * 1000,
            comparison_name="plain columns",
            note="what the INSERT and its commit add to the plain read",
            paired_ratio=ratios["floor"],
        ),
        Figure(
            name=f"record page: {arguments.entries} entries, {through}, vs decrypted + INSERT",
            unit="ms",
            patterm=audited * 1000,
            comparison=medians["floor_dec"] * 1000,
            comparison_name="the decrypted read + one durable INSERT of the audit row",
            note="what the consent decision and the audit row's own work add",
            paired_ratio=paired("audited", "floor_dec"),
        ),
    ]
    if figures[0].met is False:
        profile_to(
            arguments.profile_dir and f"{arguments.profile_dir}/record-read-decrypted.txt",
            lambda: [read_decrypted() for _ in range(20)],
        )
        profile_to(
            arguments.profile_dir and f"{arguments.profile_dir}/record-read-audited.txt",
            lambda: [read_audited() for _ in range(20)],
        )
    write_figures(arguments.json, "record_read", figures, sizes=sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
