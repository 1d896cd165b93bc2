from django.core.management.base import BaseCommand, CommandError

from accounts.models import User, normalize_email
from accounts.otp import otp_reset


class Command(BaseCommand):
    help = (
        "Reset a staff member's second factor (a lost or replaced phone): remove their "
        "authenticator app and recovery codes and end every browser session and API token of "
        "theirs. They set up a new app at their next sign-in. Check who is asking first "
        "(docs/operations.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("email", help="the e-mail address the account signs in with")
        parser.add_argument(
            "--yes", action="store_true", help="do not ask for confirmation (for scripts)"
        )

    def handle(self, *args, email, yes, **options):
        user = User.objects.filter(email=normalize_email(email)).first()
        if user is None:
            raise CommandError(f"No account signs in with {email!r}.")
        if not yes:
            answer = input(
                f"Reset the second factor of account {user.pk} and sign it out everywhere? "
                "Type 'reset' to go on: "
            )
            if answer.strip() != "reset":
                raise CommandError("Nothing reset.")
        if not otp_reset(user=user, actor=None):
            self.stdout.write(f"Account {user.pk} has no second factor: nothing to reset.")
            return
        self.stdout.write(
            self.style.SUCCESS(f"Second factor of account {user.pk} reset; all sessions ended.")
        )
