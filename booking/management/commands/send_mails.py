import signal
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from tqdm import tqdm

from booking import outbox

PURGE_EVERY = 3600  # seconds between the long-running sender's deletions of finished rows


class Command(BaseCommand):
    help = (
        "Send the appointment e-mails (confirmation, cancellation, move) that bookings wrote "
        "to the outbox, rendering each with its calendar file (decision 0022). Runs until "
        "stopped (SIGTERM or Ctrl-C end it after the current mail); --once sends what is due "
        "and exits (cron, tests). Any number may run at once, none sends a mail twice; a mail "
        "server that refuses is retried with backoff, never given up. Finished rows older than "
        "PATTERM_MAIL_OUTBOX_KEEP_DAYS (30) are deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="send what is due, then exit")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=outbox.DEFAULT_BATCH_SIZE,
            help=f"mails claimed at a time (default {outbox.DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="seconds to wait when nothing is due (default 0.5)",
        )

    def handle(self, *args, once, batch_size, interval, verbosity, **options):
        if batch_size < 1 or interval <= 0:
            raise CommandError("--batch-size must be at least 1 and --interval above 0.")
        if once:
            bar = tqdm(
                unit="mails",
                desc="Sending mails",
                disable=not sys.stderr.isatty() or verbosity == 0,
            )
            with bar:
                run = outbox.mails_send(batch_size=batch_size, progress=bar.update)
            self._report(run, purged=outbox.finished_mails_purge())
            return
        stopping = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.append(True))
        self.stdout.write(f"Mail sender running, batches of {batch_size}.")
        self.stdout.flush()
        purged_at = None
        try:
            while not stopping:
                try:
                    if purged_at is None or time.monotonic() - purged_at > PURGE_EVERY:
                        outbox.finished_mails_purge()
                        purged_at = time.monotonic()
                    run = outbox.mails_send(batch_size=batch_size)
                except (OperationalError, InterfaceError) as error:
                    # The database restarting, or SQLite's write lock busy past its timeout: a
                    # claim not made sends nothing; wait and claim again instead of ending (and
                    # with it `make run`, whose processes all stop when one does).
                    self.stderr.write(f"database unavailable ({type(error).__name__}); retrying")
                    connection.close()
                    time.sleep(max(interval, 1.0))
                    continue
                handled = run.sent + run.superseded + run.no_recipient + run.failed
                if run.failed:
                    self.stderr.write(
                        self.style.WARNING(
                            f"{run.failed} mails refused by the mail server; retried later."
                        )
                    )
                if handled and verbosity > 1:
                    self.stdout.write(self._summary(run))
                if not handled:
                    time.sleep(interval)
        finally:
            connection.close()
        self.stdout.write("Mail sender stopped.")

    @staticmethod
    def _summary(run: outbox.MailRun) -> str:
        return (
            f"{run.sent} mails sent, {run.superseded} superseded by a later mail of the same "
            f"appointment, {run.no_recipient} without recipient (closed accounts), "
            f"{run.failed} refused (retried later)."
        )

    def _report(self, run: outbox.MailRun, *, purged: int) -> None:
        self.stdout.write(self.style.SUCCESS(self._summary(run)))
        if purged:
            self.stdout.write(
                f"{purged} finished mails older than {settings.PATTERM_MAIL_OUTBOX_KEEP_DAYS} "
                "days deleted from the outbox."
            )
        state = outbox.outbox_state()
        if state.waiting:
            age = timezone.now() - state.oldest
            self.stdout.write(
                f"{state.waiting} mails wait in the outbox ({state.retrying} of them refused "
                f"before and backing off); the oldest since {int(age.total_seconds())} s."
            )
