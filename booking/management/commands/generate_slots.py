import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from booking.models import OpeningHours
from booking.services import slots_generate


class Command(BaseCommand):
    help = (
        "Create bookable slots from every practitioner's opening hours for the next DAYS days "
        "(default 28), skipping absences and slots that exist already. Run it daily (cron) "
        "to keep the horizon; a second run the same day creates nothing. Shows a progress bar "
        "(one step per opening hours row) on a terminal."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=28,
            help="how many days from today to fill with slots, 1 to 366 (default 28)",
        )

    def handle(self, *args, days, **options):
        if not 1 <= days <= 366:
            raise CommandError("--days must be between 1 and 366.")
        with tqdm(
            total=OpeningHours.objects.count(),
            unit="opening hours",
            desc="Generating slots",
            disable=not sys.stderr.isatty() or options["verbosity"] == 0,
        ) as progress:
            created = slots_generate(days=days, on_progress=progress.update)
        self.stdout.write(self.style.SUCCESS(f"{created} slots created for the next {days} days."))
