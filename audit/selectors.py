from django.db.models import QuerySet

from audit.models import AuditEvent
from audit.services import subject_pseudonym


def events_about(*, patient_id: int, by_others: bool = True) -> QuerySet[AuditEvent]:
    """The events whose data subject is this patient, newest first; by default only those of
    other actors (what others did with the patient's data)."""
    events = AuditEvent.objects.filter(subject_ref=subject_pseudonym(patient_id))
    if by_others:
        events = events.exclude(actor_id=patient_id)
    return events.order_by("-seq")
