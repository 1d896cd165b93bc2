import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from vault.relatives import takeover_notices_send


class Command(BaseCommand):
    help = (
        "E-mail each account holder once when a relative they manage reaches "
        "PATTERM_RELATIVE_OWN_ACCOUNT_AGE (default 15) and may take over their record with an "
        "account of their own (decision 0014). Idempotent: run it daily (docs/operations.md)."
    )

    def handle(self, *args, verbosity, **options):
        def progress(items):
            return tqdm(
                items,
                unit="relatives",
                desc="Checking relatives",
                disable=not sys.stderr.isatty() or verbosity == 0,
            )

        run = takeover_notices_send(progress=progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"{run.told} holders told, of {run.checked} relatives not told before."
            )
        )
