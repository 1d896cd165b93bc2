import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.models import AuditEvent
from audit.services import chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain from the first row to the last, in constant memory. "
        "Exits 0 when the chain is intact, 1 naming the first broken sequence number otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size", type=int, default=2000, help="rows fetched per query (default 2000)"
        )

    def handle(self, *args, chunk_size, **options):
        show_progress = sys.stderr.isatty() and options["verbosity"] > 0
        with tqdm(
            total=AuditEvent.objects.count() if show_progress else None,
            unit="events",
            disable=not show_progress,
            desc="Verifying audit chain",
        ) as progress:
            result = chain_verify(chunk_size=chunk_size, on_progress=progress.update)
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
                f"Audit chain intact: {result.events_checked} events, head #{result.head_seq} "
                f"{result.head_hash}."
            )
        )
