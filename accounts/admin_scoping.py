"""Django admin for clinic admins: every model admin of a clinic's data sees only the clinics
the signed-in clinic admin administers; superusers see everything.

Permissions follow the account's role, not Django's permission tables: a clinic admin with
`is_staff` (set when the account is created, decision 0010) may use these admins, nobody else
but superusers. An object of another clinic is not in `get_queryset`, so the admin answers as
for a missing object (a redirect to the index with "does not exist"). Foreign key choices are
limited to the admin's clinics too, so no other clinic's practitioner, slot or membership is
offered or accepted.

Encrypted fields are never decrypted here: they are left out of forms and lists and shown as
"encrypted" (`encrypted_display`).
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic, Membership, Role, User

ENCRYPTED = _("encrypted")


def is_clinic_admin(request) -> bool:
    user = request.user
    return user.is_active and user.is_staff and user.role == Role.CLINIC_ADMIN


def administered_clinic_ids(request) -> list[int]:
    """The clinics the signed-in user administers, once per request."""
    if not hasattr(request, "_administered_clinic_ids"):
        request._administered_clinic_ids = list(
            Membership.objects.filter(user=request.user, role=Role.CLINIC_ADMIN).values_list(
                "clinic_id", flat=True
            )
        )
    return request._administered_clinic_ids


class ClinicScopedAdmin(admin.ModelAdmin):
    """`clinic_lookup` is the path from the model to its clinic ("pk" for Clinic itself).
    `clinic_admin_can_add` / `_change` / `_delete` say what a clinic admin may do."""

    clinic_lookup = "clinic"
    clinic_admin_can_add = True
    clinic_admin_can_change = True
    clinic_admin_can_delete = True

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        if is_clinic_admin(request):
            return queryset.filter(
                **{f"{self.clinic_lookup}__in": administered_clinic_ids(request)}
            ).distinct()
        return queryset.none()

    def _in_scope(self, request, obj) -> bool:
        if request.user.is_superuser:
            return True
        if not is_clinic_admin(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request):
        return request.user.is_superuser or is_clinic_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._in_scope(request, obj)

    def has_add_permission(self, request, *args):
        return request.user.is_superuser or (self.clinic_admin_can_add and is_clinic_admin(request))

    def has_change_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return self.clinic_admin_can_change and self._in_scope(request, obj)

    def has_delete_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return self.clinic_admin_can_delete and self._in_scope(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        limited = scoped_choices(db_field, request)
        if limited is not None:
            kwargs["queryset"] = limited
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def scoped_choices(db_field, request):
    """Choices of clinics, memberships, slots and staff limited to the clinic admin's clinics;
    None: no limit (superusers, other models)."""
    if request.user.is_superuser:
        return None
    clinics = administered_clinic_ids(request) if is_clinic_admin(request) else []
    model = db_field.related_model
    if model is Clinic:
        return Clinic.objects.filter(pk__in=clinics)
    if model is Membership:
        return Membership.objects.filter(
            clinic_id__in=clinics, role=Role.PRACTITIONER
        ).select_related("user", "clinic")
    if model is User:
        return User.objects.filter(
            memberships__clinic_id__in=clinics, memberships__role=Role.PRACTITIONER
        ).distinct()
    if model._meta.label == "booking.Slot":
        return model.objects.filter(clinic_id__in=clinics)
    return None


class ClinicScopedInline(admin.TabularInline):
    """An inline of a scoped admin: its rows belong to the parent, which is scoped already."""

    extra = 0

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser or is_clinic_admin(request)

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        limited = scoped_choices(db_field, request)
        if limited is not None:
            kwargs["queryset"] = limited
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def encrypted_display(field_name: str, label):
    """A read-only admin column or field for an encrypted value: it says "encrypted" and never
    reads (decrypts) the value."""

    @admin.display(description=label)
    def display(self, obj):
        return ENCRYPTED

    display.__name__ = f"{field_name}_encrypted"
    return display
