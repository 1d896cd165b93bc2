import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.integrator import tree_size
from audit.services import verification_run


class Command(BaseCommand):
    help = (
        "Verify the audit log: recompute the Merkle tree from every event (or from --from-leaf), "
        "compare it with the stored tree and every signed checkpoint, streaming, in constant "
        "memory. Exits 0 when intact, 1 naming the first broken event otherwise. The run "
        "itself is audited."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size", type=int, default=2000, help="rows fetched per query (default 2000)"
        )
        parser.add_argument(
            "--from-leaf",
            type=int,
            default=0,
            help="start at this leaf, trusting the stored tree before it (default 0: all)",
        )
        parser.add_argument(
            "--kept",
            action="append",
            default=[],
            metavar="CHECKPOINT",
            help="a checkpoint (signed note file) kept earlier: the log must still have its root "
            "at its size (a fork or a shrunk tree fails); repeatable",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the result as JSON (API.md AuditVerify)"
        )

    def handle(self, *args, chunk_size, from_leaf, kept, json: bool, **options):
        if chunk_size < 1 or from_leaf < 0:
            raise CommandError("--chunk-size must be at least 1 and --from-leaf at least 0.")
        kept_notes = [_read_note(path) for path in kept]
        show_progress = sys.stderr.isatty() and options["verbosity"] > 0 and not json
        with tqdm(
            total=max(tree_size() - from_leaf, 0) if show_progress else None,
            unit="events",
            disable=not show_progress,
            desc="Verifying audit log",
        ) as progress:
            result = verification_run(
                chunk_size=chunk_size,
                from_leaf=from_leaf,
                on_progress=progress.update,
                kept=kept_notes,
            )
        if json:
            self.stdout.write(_dumps(result.as_dict()))
            if not result.ok:
                sys.exit(1)
            return
        if not result.ok:
            raise CommandError(
                f"Audit log broken at leaf {result.first_broken_leaf} "
                f"(event #{result.first_broken_seq}): {result.problem} "
                f"({result.events_checked} events verified before it)."
            )
        if result.events_checked == 0:
            self.stdout.write(
                f"Audit log is empty: nothing to verify ({result.staged_events} events staged)."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit log intact: {result.events_checked} events, "
                f"{result.checkpoints_checked} signed checkpoints, tree of {result.tree_size} "
                f"leaves with root {result.root_hash}; {result.staged_events} events staged "
                "for the integrator."
            )
        )


def _read_note(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not a checkpoint: not UTF-8 text.") from None
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}.") from None


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
