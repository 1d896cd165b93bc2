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

    def handle(self, *args, patient_id, yes, **options):
        patient = User.objects.filter(pk=patient_id, role=Role.PATIENT).first()
        if patient is None:
            raise CommandError(f"No patient with id {patient_id}.")
        if services.patient_is_erased(patient):
            self.stdout.write(f"Patient {patient_id} is already erased: nothing to do.")
            return
        if not yes:
            answer = input(
                f"Erase patient {patient_id} for good? Their data cannot be recovered. "
                "Type 'erase' to go on: "
            )
            if answer.strip() != "erase":
                raise CommandError("Not erased.")
        services.patient_erase(patient=patient)
        self.stdout.write(self.style.SUCCESS(f"Patient {patient_id} erased."))
