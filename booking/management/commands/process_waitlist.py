import sys

from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from booking.models import OfferStatus, WaitlistOffer
from booking.waitlist import offers_expire


class Command(BaseCommand):
    help = (
        "Expire the waitlist offers whose hold has ended: each slot goes to the next matching "
        "patient waiting, in order of joining, or back to free search. Holds also end lazily "
        "when their slot is next touched; this command makes sure none waits for that. Run it "
        "every few minutes (cron or a systemd timer, docs/operations.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="only count the offers whose hold has ended; change nothing",
        )

    def handle(self, *args, dry_run, verbosity, **options):
        if dry_run:
            due = WaitlistOffer.objects.filter(
                status=OfferStatus.OPEN, expires_at__lte=timezone.now()
            ).count()
            self.stdout.write(f"{due} offers have expired (dry run: nothing changed).")
            return

        def progress(items):
            return tqdm(
                items,
                unit="offers",
                desc="Expiring offers",
                disable=not sys.stderr.isatty() or verbosity == 0,
            )

        run = offers_expire(progress=progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"{run.expired} offers expired: {run.passed_on} slots offered to the next "
                f"patient waiting, {run.returned} back in free search."
            )
        )
