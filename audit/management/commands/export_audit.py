import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.export import export_lines
from audit.integrator import checkpoint_create, tree_size
from audit.models import AuditAction
from audit.services import event_append


class Command(BaseCommand):
    help = (
        "Write the audit log's leaves with its signed checkpoints as a JSON Lines evidence "
        "file that audit/verify_export.py and audit/tlogcheck verify offline. Integrates what "
        "is committed and signs a fresh checkpoint first, so the whole file is covered. The "
        "export itself is audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("output", help="the file to write (an existing file is refused)")

    def handle(self, *args, output, **options):
        checkpoint_create()
        total = tree_size()
        try:
            handle = open(output, "x", encoding="utf-8")  # noqa: SIM115 (closed below)
        except FileExistsError:
            raise CommandError(f"{output} exists: choose a new file name.") from None
        except OSError as error:
            raise CommandError(f"Cannot write {output}: {error.strerror}.") from None
        with (
            handle,
            tqdm(
                total=total,
                unit="events",
                desc="Exporting audit log",
                disable=not sys.stderr.isatty() or options["verbosity"] == 0,
            ) as progress,
        ):
            for line in export_lines(on_progress=progress.update):
                handle.write(line + "\n")
        event_append(
            action=AuditAction.AUDIT_EXPORT,
            outcome="success",
            details={"events": total},
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {total} events to {output}. Verify with: "
                f"python3 audit/verify_export.py {output}"
            )
        )
