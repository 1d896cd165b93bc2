"""What the staff pages share: domain errors shown on a form, and the emergency-access banner.

The banner: while a practitioner's declared emergency access is active, every staff page says
so and when it ends (templates/staff/base.html).
"""

from django.utils import timezone

from accounts.models import Role
from consent.models import EmergencyAccess
from patterm.errors import DomainError, InvalidInput


def form_errors_add(form, error: DomainError) -> None:
    """Show a service's refusal on the form: an InvalidInput's errors next to the fields the
    form has, everything else above the form."""
    if isinstance(error, InvalidInput) and error.errors:
        for item in error.errors:
            field = item.get("field") or None
            form.add_error(field if field in form.fields else None, item["message"])
    else:
        form.add_error(None, error.message)


def emergency_accesses(request) -> dict:
    """`active_emergency_accesses`: the practitioner's active emergency accesses, soonest end
    first; evaluated (one query) only by a page that shows it."""

    def active():
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or user.role != Role.PRACTITIONER:
            return []
        return list(
            EmergencyAccess.objects.filter(practitioner=user, expires_at__gt=timezone.now())
            .order_by("expires_at")
            .values("patient_id", "expires_at")
        )

    return {"active_emergency_accesses": active}
