from django.db.models import QuerySet

from audit.models import AuditEvent, AuditTreeCheckpoint
from audit.services import subject_pseudonym


def events_about(*, patient_id: int, by_others: bool = True) -> QuerySet[AuditEvent]:
    """The events whose data subject is this patient, newest first; by default only those of
    other actors (what others did with the patient's data)."""
    events = AuditEvent.objects.filter(subject_ref=subject_pseudonym(patient_id))
    if by_others:
        events = events.exclude(actor_id=patient_id)
    return events.order_by("-seq")


def signed_tree_size() -> int:
    """How many leaves the latest signed checkpoint covers (0 before the first): an event
    whose leaf index is below it has an inclusion proof to download."""
    latest = AuditTreeCheckpoint.objects.order_by("-tree_size").values_list("tree_size", flat=True)
    return latest.first() or 0
