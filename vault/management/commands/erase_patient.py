from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role, User
from vault import services


class Command(BaseCommand):
    help = (
        "Erase a patient by crypto-shredding (GDPR Art. 17): destroy their data key so that "
        "every value encrypted with it is unreadable, anonymise and close the account, revoke "
        "its tokens. Cannot be undone. Check retention duties first (docs/erasure.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("patient_id", type=int, help="the patient's user id")
        parser.add_argument(
            "--yes", action="store_true", help="do not ask for confirmation (for scripts)"
        )
        parser.add_argument(
            "--ignore-retention",
            action="store_true",
            help="erase although the patient's erasure request is still within the retention "
            "period (a court order, a proven error): record the reason outside Patterm",
        )

    def handle(self, *args, patient_id, yes, ignore_retention, **options):
        patient = User.objects.filter(pk=patient_id, role=Role.PATIENT).first()
        if patient is None:
            raise CommandError(f"No patient with id {patient_id}.")
        if services.patient_is_erased(patient):
            self.stdout.write(f"Patient {patient_id} is already erased: nothing to do.")
            return
        retained = services.erasure_retained_until(patient=patient)
        if retained and not ignore_retention:
            raise CommandError(
                f"Patient {patient_id}'s records are retained until {retained:%Y-%m-%d} "
                "(PATTERM_RECORD_RETENTION_YEARS): not erased. See docs/erasure.md."
            )
        if not yes:
            answer = input(
                f"Erase patient {patient_id} for good? Their data cannot be recovered. "
                "Type 'erase' to go on: "
            )
            if answer.strip() != "erase":
                raise CommandError("Not erased.")
        services.patient_erase(patient=patient)
        self.stdout.write(self.style.SUCCESS(f"Patient {patient_id} erased."))
