"""Domain events: how the other apps tell the audit log what happened.

Services call `send_event(...)` inside their own transaction, the way `django.contrib.auth.login()`
sends `user_logged_in`. The receiver (audit/receivers.py) appends the chained row in that same
transaction, and an exception there propagates: a change whose audit row cannot be written is
rolled back with it.
"""

from django.dispatch import Signal

from audit.models import Outcome

# Arguments: action, actor, outcome, object_type, object_id, subject_id, clinic_id, purpose, details
audit_event = Signal()


def send_event(
    *,
    action: str,
    actor=None,
    outcome: str = Outcome.SUCCESS,
    object_type: str = "",
    object_id: object = "",
    subject_id: int | None = None,
    clinic_id: int | None = None,
    purpose: str = "",
    details: dict | None = None,
    sender: object = None,
) -> None:
    """Record one audited event.

    `actor` is the user acting (or None for the anonymous or the system); `subject_id` is the id
    of the patient whose data is concerned, stored only as a keyed pseudonym. `details` holds
    identifiers and codes only, never personal or medical values.
    """
    audit_event.send(
        sender=sender,
        action=action,
        actor=actor,
        outcome=outcome,
        object_type=object_type,
        object_id="" if object_id is None else str(object_id),
        subject_id=subject_id,
        clinic_id=clinic_id,
        purpose=purpose,
        details=details or {},
    )
