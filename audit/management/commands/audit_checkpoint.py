from django.core.management.base import BaseCommand

from audit.services import checkpoint_create


class Command(BaseCommand):
    help = (
        "Sign the audit chain's current head (Ed25519, PATTERM_AUDIT_SIGNING_KEY) and store the "
        "checkpoint. Checkpoints are also signed automatically every "
        "PATTERM_AUDIT_CHECKPOINT_EVERY events and PATTERM_AUDIT_CHECKPOINT_MINUTES minutes."
    )

    def handle(self, *args, **options):
        checkpoint = checkpoint_create()
        if checkpoint is None:
            self.stdout.write("The audit chain is empty: nothing to sign.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Checkpoint #{checkpoint.head_seq} {checkpoint.head_hash} signed with key "
                f"{checkpoint.key_id} at {checkpoint.created_at.isoformat()}."
            )
        )
