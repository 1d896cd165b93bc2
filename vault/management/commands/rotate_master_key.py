import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from vault import services


class Command(BaseCommand):
    help = (
        "Re-wrap every patient data key under the newest master key in PATTERM_MASTER_KEYS. "
        "Batches commit one by one: an interrupted run is simply run again. "
        "See docs/key-rotation.md."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=2000,
            help="data keys re-wrapped per transaction (default 2000)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="only count the keys still to re-wrap"
        )

    def handle(self, *args, batch_size, dry_run, **options):
        if batch_size < 1:
            self.stderr.write("--batch-size must be at least 1")
            sys.exit(2)
        pending = services.master_key_rotation_pending().count()
        if dry_run or pending == 0:
            result = services.master_key_rotate(dry_run=True)
            self.stdout.write(
                f"{result.pending} data keys to re-wrap under master key version "
                f"{result.target_version}" + (" (dry run: nothing changed)." if dry_run else ".")
            )
            return
        with tqdm(
            total=pending,
            unit="keys",
            desc="Re-wrapping data keys",
            disable=not sys.stderr.isatty() or options["verbosity"] == 0,
        ) as progress:
            result = services.master_key_rotate(batch_size=batch_size, on_batch=progress.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-wrapped {result.rewrapped} data keys under master key version "
                f"{result.target_version}."
            )
        )
