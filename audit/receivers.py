import functools
import json

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry, LogEntryManager
from django.db.models.signals import post_save
from django.dispatch import receiver

from audit import services
from audit.models import AuditAction
from audit.signals import audit_event

_ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


@receiver(audit_event, dispatch_uid="audit.append_event")
def append_event(sender, signal, **event):
    services.event_append(**event)


@receiver(post_save, sender=LogEntry, dispatch_uid="audit.admin_change")
def admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    """Edits in the Django admin bypass the services: the admin's own log entry is chained.

    Names of changed fields only; never `object_repr` or values, which may be personal data.
    """
    if not created:
        return
    _admin_entry_append(instance)


def _admin_entry_append(instance: LogEntry) -> None:
    instance._audit_appended = True
    fields = sorted(
        {
            field
            for part in _change_message(instance)
            for field in part.get("changed", {}).get("fields", [])
        }
    )
    services.event_append(
        action=AuditAction.ADMIN_CHANGE,
        actor=instance.user,
        outcome="success",
        object_type=instance.content_type.app_label + "." + instance.content_type.model
        if instance.content_type
        else "",
        object_id=instance.object_id or "",
        details={"change": _ADMIN_ACTIONS.get(instance.action_flag, "other"), "fields": fields},
    )


def _change_message(entry: LogEntry) -> list:
    try:
        message = json.loads(entry.change_message or "[]")
    except ValueError:  # a plain-text message from older code: nothing structured to keep
        return []
    return message if isinstance(message, list) else []


def _bulk_entries_audited(log_actions):
    """The admin's "delete selected" action logs several objects with one `bulk_create`, which
    sends no `post_save`: the entries that were not chained by `admin_change` are chained here."""

    @functools.wraps(log_actions)
    def audited(self, *args, **kwargs):
        entries = log_actions(self, *args, **kwargs)
        if isinstance(entries, list):
            for entry in entries:
                if not getattr(entry, "_audit_appended", False):
                    _admin_entry_append(entry)
        return entries

    audited.audited = True
    return audited


if not getattr(LogEntryManager.log_actions, "audited", False):
    LogEntryManager.log_actions = _bulk_entries_audited(LogEntryManager.log_actions)
