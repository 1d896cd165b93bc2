"""Django admin: accounts for platform operators (superusers); clinics for them and, scoped to
their own clinics, for clinic admins (accounts/admin_scoping.py; memberships are in
booking/admin.py with the practitioners' specialties, hours and absences).

Patients' names and dates of birth are not on the user: they stay encrypted in the vault and are
never shown here.
"""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from django.utils.translation import gettext_lazy as _

from accounts.admin_scoping import ClinicScopedAdmin
from accounts.models import Clinic, Membership, User
from accounts.sessions import EndReason, sessions_end_all


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "role")


class AdminPasswordChangeForm(auth_forms.AdminPasswordChangeForm):
    """An operator setting a password ends every session and token of that user."""

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            sessions_end_all(user=user, actor=None, reason=EndReason.PASSWORD_CHANGE)
        return user


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["clinic"]


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    ordering = ["email"]
    list_display = ["email", "role", "is_active", "is_staff", "last_login"]
    list_filter = ["role", "is_active", "is_staff"]
    search_fields = ["email"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Role"), {"fields": ["role", "first_name", "last_name", "language"]}),
        (
            _("Permissions"),
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        (_("Dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "role", "password1", "password2"]}),
    ]


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    """Clinic admins see and change their own clinics; operators add and remove clinics."""

    clinic_lookup = "pk"
    clinic_admin_can_add = clinic_admin_can_delete = False
    list_display = ["name", "city", "slug", "reminder_hours"]
    search_fields = ["name", "city"]
    prepopulated_fields = {"slug": ["name"]}
