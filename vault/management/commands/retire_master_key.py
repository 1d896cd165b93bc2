from django.core.management.base import BaseCommand, CommandError

from vault import services


class Command(BaseCommand):
    help = (
        "Confirm that a master key version wraps no live data key any more, so that it can be "
        "removed from PATTERM_MASTER_KEYS. Refuses while any data key still needs it."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", type=int, help="the master key version to retire")

    def handle(self, *args, version, **options):
        try:
            services.master_key_retire(version=version)
        except services.MasterKeyInUse as refusal:
            raise CommandError(f"Refused: {refusal}.") from refusal
        self.stdout.write(
            self.style.SUCCESS(
                f"No data key uses master key version {version}. Remove it from "
                "PATTERM_MASTER_KEYS on every server, then destroy it once no backup that needs "
                "it is kept (docs/key-rotation.md)."
            )
        )
