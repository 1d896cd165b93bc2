import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.models import AuditEvent
from audit.services import verification_run


class Command(BaseCommand):
    help = (
        "Verify the audit log: the hash chain from the first row (or --from-seq) to the last, "
        "and every signed checkpoint, in constant memory. Exits 0 when intact, 1 naming the "
        "first broken sequence number otherwise. The run itself is audited."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size", type=int, default=2000, help="rows fetched per query (default 2000)"
        )
        parser.add_argument(
            "--from-seq",
            type=int,
            default=1,
            help="start at this row, trusting the one before it (default 1: the whole chain)",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the result as JSON (API.md AuditVerify)"
        )

    def handle(self, *args, chunk_size, from_seq, json: bool, **options):
        if chunk_size < 1 or from_seq < 1:
            raise CommandError("--chunk-size and --from-seq must be at least 1.")
        show_progress = sys.stderr.isatty() and options["verbosity"] > 0 and not json
        with tqdm(
            total=AuditEvent.objects.filter(seq__gte=from_seq).count() if show_progress else None,
            unit="events",
            disable=not show_progress,
            desc="Verifying audit chain",
        ) as progress:
            result = verification_run(
                chunk_size=chunk_size, from_seq=from_seq, on_progress=progress.update
            )
        if json:
            self.stdout.write(_dumps(result.as_dict()))
            if not result.ok:
                sys.exit(1)
            return
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at sequence number {result.first_broken_seq}: "
                f"{result.problem} ({result.events_checked} events verified before it)."
            )
        if result.events_checked == 0:
            self.stdout.write("Audit chain is empty: nothing to verify.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {result.events_checked} events, "
                f"{result.checkpoints_checked} signed checkpoints, head #{result.head_seq} "
                f"{result.head_hash}."
            )
        )


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
