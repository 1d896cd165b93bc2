from django.core.management.base import BaseCommand, CommandError

from booking.services import slots_generate


class Command(BaseCommand):
    help = (
        "Create bookable slots from every practitioner's opening hours for the next DAYS days "
        "(default 28), skipping absences and slots that exist already. Run it daily (cron) "
        "to keep the horizon; a second run the same day creates nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=28, help="horizon in days (1-366)")

    def handle(self, *args, days, **options):
        if not 1 <= days <= 366:
            raise CommandError("--days must be between 1 and 366.")
        created = slots_generate(days=days)
        self.stdout.write(self.style.SUCCESS(f"{created} slots created for the next {days} days."))
