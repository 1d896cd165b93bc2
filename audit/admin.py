"""The audit log in the Django admin: read-only, for auditors and superusers. Nobody adds,
changes or deletes a row or a checkpoint here (the database refuses it too); opening the list
is itself audited, as reading the log through the API is."""

from django.contrib import admin

from audit.models import AuditAction, AuditCheckpoint, AuditEvent, AuditTreeCheckpoint, Outcome
from audit.services import event_append

AUDITOR = "auditor"  # accounts.Role.AUDITOR: audit sits below accounts and does not import it


def _reads_the_log(request) -> bool:
    user = request.user
    return user.is_active and (user.is_superuser or (user.is_staff and user.role == AUDITOR))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_module_permission(self, request):
        return _reads_the_log(request)

    def has_view_permission(self, request, obj=None):
        return _reads_the_log(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        return {}


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "leaf_index",
        "occurred_at",
        "action",
        "outcome",
        "actor_id",
        "actor_role",
        "object_type",
        "clinic_id",
    ]
    list_filter = ["action", "outcome", "actor_role"]
    search_fields = ["=seq", "=actor_id", "=object_id", "=request_id"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and self.has_view_permission(request):
            event_append(
                action=AuditAction.AUDIT_READ,
                actor=request.user,
                outcome=Outcome.SUCCESS,
                details={"via": "admin"},
            )
        return super().changelist_view(request, extra_context)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["head_seq", "head_hash", "created_at", "key_id"]


@admin.register(AuditTreeCheckpoint)
class AuditTreeCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["tree_size", "root_hash", "created_at", "key_hash"]
