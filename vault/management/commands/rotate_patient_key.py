from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role, User
from patterm.errors import NotFound
from vault import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every value of one patient under a fresh data key and destroy the old one "
        "(after a suspected leak of that key). One transaction."
    )

    def add_arguments(self, parser):
        parser.add_argument("patient_id", type=int, help="the patient's user id")

    def handle(self, *args, patient_id, **options):
        patient = User.objects.filter(pk=patient_id, role=Role.PATIENT).first()
        if patient is None:
            raise CommandError(f"No patient with id {patient_id}.")
        try:
            rows = services.patient_key_rotate(patient=patient)
        except NotFound:
            raise CommandError(f"Patient {patient_id} has no live data key (erased?).") from None
        self.stdout.write(
            self.style.SUCCESS(f"Patient {patient_id}: {rows} rows re-encrypted under a new key.")
        )
