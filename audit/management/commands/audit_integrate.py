import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit import integrator


class Command(BaseCommand):
    help = (
        "Integrate staged audit events into the Merkle tree, batch by batch, and sign "
        "checkpoints when due (PATTERM_AUDIT_CHECKPOINT_EVERY / _MINUTES). Runs until stopped "
        "(SIGTERM or Ctrl-C end it after the current batch); --once integrates what is "
        "committed and exits (cron, tests). Only one integrator runs at a time: a second one "
        "exits with a message, or waits with --wait."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="integrate what is there, exit")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=integrator.DEFAULT_BATCH_SIZE,
            help=f"events per transaction (default {integrator.DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.1,
            help="seconds to wait when nothing is staged (default 0.1)",
        )
        parser.add_argument(
            "--wait", action="store_true", help="wait for a running integrator to stop first"
        )

    def handle(self, *args, once, batch_size, interval, wait, **options):
        if batch_size < 1 or interval <= 0:
            raise CommandError("--batch-size must be at least 1 and --interval above 0.")
        if once:
            total = integrator.integrate_pending(batch_size=batch_size)
            self._report(total)
            return
        if wait:
            integrator.process_lock_wait()
        elif not integrator.process_lock_try():
            raise CommandError(
                "Another audit integrator is running on this database; only one may. Stop it "
                "first, or start this one with --wait to take over when it stops."
            )
        stopping = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.append(True))
        self.stdout.write(f"Audit integrator running (pid in `ps`), batches of {batch_size}.")
        try:
            while not stopping:
                integrated = len(integrator.integrate_batch(limit=batch_size))
                if integrated and options["verbosity"] > 1:
                    self.stdout.write(f"integrated {integrated} events")
                if integrated < batch_size:
                    time.sleep(interval)
        finally:
            integrator.process_lock_release()
            connection.close()
        self.stdout.write("Audit integrator stopped.")

    def _report(self, total: int) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"Integrated {total} events; the tree has {integrator.tree_size()} leaves, "
                f"{integrator.staged_count()} events are staged (uncommitted or newer)."
            )
        )
