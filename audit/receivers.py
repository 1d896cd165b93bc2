from django.dispatch import receiver

from audit import services
from audit.signals import audit_event


@receiver(audit_event, dispatch_uid="audit.append_event")
def append_event(sender, signal, **event):
    services.event_append(**event)
