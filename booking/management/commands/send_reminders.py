import sys

from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from booking.reminders import reminders_due, reminders_send


class Command(BaseCommand):
    help = (
        "E-mail the appointment reminders that are due now, at the hours before each "
        "appointment its clinic configures (default 48 and 2). Each reminder is sent once, also "
        "when two runs overlap or one stops midway; cancelled appointments and closed or erased "
        "accounts get none. Safe to run as often as you like: run it every 5 minutes (cron or "
        "a systemd timer, docs/operations.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="only count the reminders due now; claim and send nothing",
        )

    def handle(self, *args, dry_run, verbosity, **options):
        if dry_run:
            due = reminders_due(now=timezone.now())
            self.stdout.write(f"{len(due)} reminders are due now (dry run: none sent).")
            return

        def progress(items):
            return tqdm(
                items,
                unit="reminders",
                desc="Sending reminders",
                disable=not sys.stderr.isatty() or verbosity == 0,
            )

        run = reminders_send(progress=progress)
        self.stdout.write(
            self.style.SUCCESS(
                f"{run.sent} reminders sent, {run.skipped} skipped (closed or erased accounts), "
                f"{run.taken} sent by another run, {run.failed} failed (retried next run)."
            )
        )
        if run.unconfirmed:
            self.stderr.write(
                self.style.WARNING(
                    f"{run.unconfirmed} reminders were claimed by a run that stopped before "
                    "sending them; they are not sent again (see docs/operations.md)."
                )
            )
