from django.core.management.base import BaseCommand

from patterm.demo import ACCOUNTS, DEMO_PASSWORD_NOTE, PRACTITIONERS, SUPERUSER, seed_demo


class Command(BaseCommand):
    help = (
        "Load the demo data: three clinics, specialties, practitioners with opening hours, "
        "slots for four weeks from tomorrow, and one account per role (see the README). "
        "Idempotent: running it again changes nothing."
    )

    def handle(self, *args, **options):
        created = seed_demo()
        summary = ", ".join(f"{count} {kind}" for kind, count in created.items())
        self.stdout.write(f"Demo data ready (created now: {summary}).")
        if options["verbosity"] > 0:
            for account in [*ACCOUNTS, *PRACTITIONERS, SUPERUSER]:
                self.stdout.write(f"  {account.role:<13} {account.email:<32} {account.password}")
            self.stdout.write(self.style.WARNING(DEMO_PASSWORD_NOTE))
