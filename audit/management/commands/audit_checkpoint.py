from django.core.management.base import BaseCommand

from audit.integrator import checkpoint_create


class Command(BaseCommand):
    help = (
        "Integrate the committed staged audit events and sign the tree's head now as a C2SP "
        "checkpoint (Ed25519, PATTERM_AUDIT_SIGNING_KEY); prints the signed note, for keeping "
        "outside the database. Checkpoints are also signed automatically by the integrator "
        "every PATTERM_AUDIT_CHECKPOINT_EVERY events and PATTERM_AUDIT_CHECKPOINT_MINUTES minutes."
    )

    def handle(self, *args, **options):
        checkpoint = checkpoint_create()
        if checkpoint is None:
            self.stdout.write("The audit log is empty: nothing to sign.")
            return
        self.stdout.write(checkpoint.note, ending="")
        self.stderr.write(
            self.style.SUCCESS(
                f"Checkpoint of {checkpoint.tree_size} events, root {checkpoint.root_hash}, "
                f"signed with key {checkpoint.key_hash} at {checkpoint.created_at.isoformat()}."
            )
        )
