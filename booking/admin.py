"""Django admin of booking, scoped to the signed-in clinic admin's clinics
(accounts/admin_scoping.py). Appointments are read-only: cancelling goes through the service
(portal or API), and the booking snapshot stays encrypted ("encrypted")."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from accounts.admin_scoping import (
    ClinicScopedAdmin,
    ClinicScopedInline,
    encrypted_display,
    is_clinic_admin,
)
from accounts.models import Membership
from booking.models import (
    Absence,
    Appointment,
    OpeningHours,
    PractitionerSpecialty,
    Slot,
    Specialty,
    VisitMotive,
)


class PractitionerSpecialtyInline(ClinicScopedInline):
    model = PractitionerSpecialty


class OpeningHoursInline(ClinicScopedInline):
    model = OpeningHours


class AbsenceInline(ClinicScopedInline):
    model = Absence


class VisitMotiveInline(ClinicScopedInline):
    model = VisitMotive
    fields = ["specialty", "name_de", "name_en", "duration_minutes", "bookable_online", "patients"]


@admin.register(Membership)
class MembershipAdmin(ClinicScopedAdmin):
    """Staff at the clinics, with a practitioner's specialties, opening hours and absences.
    Accounts are created by operators (superusers); clinic admins change what their clinic's
    staff do there."""

    clinic_admin_can_add = False
    list_display = ["user", "clinic", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "clinic"]
    search_fields = ["user__email", "user__last_name", "clinic__name"]
    inlines = [PractitionerSpecialtyInline, OpeningHoursInline, AbsenceInline, VisitMotiveInline]

    def get_readonly_fields(self, request, obj=None):
        # A clinic admin cannot move a membership to another account or clinic.
        return [] if request.user.is_superuser else ["user", "clinic"]


@admin.register(Specialty)
class SpecialtyAdmin(admin.ModelAdmin):
    """Specialties are shared by all clinics: clinic admins see them, superusers edit them."""

    list_display = ["slug", "name_de", "name_en"]
    search_fields = ["slug", "name_de", "name_en"]

    def has_module_permission(self, request):
        return request.user.is_superuser or is_clinic_admin(request)

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(PractitionerSpecialty)
class PractitionerSpecialtyAdmin(ClinicScopedAdmin):
    clinic_lookup = "membership__clinic"
    list_display = ["membership", "specialty"]
    list_select_related = ["membership__user", "membership__clinic", "specialty"]


@admin.register(OpeningHours)
class OpeningHoursAdmin(ClinicScopedAdmin):
    clinic_lookup = "membership__clinic"
    list_display = ["membership", "weekday", "start_time", "end_time", "slot_minutes", "specialty"]
    list_filter = ["weekday"]
    list_select_related = ["membership__user", "membership__clinic", "specialty"]


@admin.register(VisitMotive)
class VisitMotiveAdmin(ClinicScopedAdmin):
    """A practitioner's visit motives (Besuchsgrund): what patients pick before a time."""

    clinic_lookup = "membership__clinic"
    list_display = [
        "name_de",
        "membership",
        "specialty",
        "duration_minutes",
        "bookable_online",
        "patients",
        "accepts_statutory",
        "accepts_private",
        "accepts_self_pay",
    ]
    list_filter = ["bookable_online", "patients", "specialty"]
    list_select_related = ["membership__user", "membership__clinic", "specialty"]
    search_fields = ["name_de", "name_en", "membership__user__last_name"]
    fields = [
        "membership",
        "specialty",
        "name_de",
        "name_en",
        "duration_minutes",
        "bookable_online",
        "patients",
        "accepts_statutory",
        "accepts_private",
        "accepts_self_pay",
        "note_de",
        "note_en",
    ]


@admin.register(Absence)
class AbsenceAdmin(ClinicScopedAdmin):
    clinic_lookup = "membership__clinic"
    list_display = ["membership", "starts_at", "ends_at"]
    list_select_related = ["membership__user", "membership__clinic"]


@admin.register(Slot)
class SlotAdmin(ClinicScopedAdmin):
    """Whether a slot is booked is the booking service's to say: read-only here."""

    list_display = ["public_id", "clinic", "practitioner", "specialty", "starts_at", "is_booked"]
    list_filter = ["is_booked", "specialty"]
    list_select_related = ["clinic", "practitioner", "specialty"]
    readonly_fields = ["is_booked", "held_until", "created_at"]
    # Whom a waitlist hold is for is the patient's business, not yet the clinic's.
    exclude = ["held_for"]
    date_hierarchy = "starts_at"

    @admin.display(description=_("slot"))
    def public_id(self, obj):
        return obj.public_id


@admin.register(Appointment)
class AppointmentAdmin(ClinicScopedAdmin):
    clinic_lookup = "slot__clinic"
    clinic_admin_can_add = clinic_admin_can_change = clinic_admin_can_delete = False
    list_display = ["pk", "slot", "status", "starts_at", "booked_at", "reason_encrypted"]
    list_filter = ["status"]
    list_select_related = ["slot"]
    fields = [
        "slot",
        "patient_number",
        "status",
        "starts_at",
        "ends_at",
        "booked_at",
        "cancelled_at",
        "patient_first_name_encrypted",
        "patient_last_name_encrypted",
        "patient_date_of_birth_encrypted",
        "patient_insurance_type_encrypted",
        "motive",
        "reason_encrypted",
    ]
    readonly_fields = fields

    @admin.display(description=_("patient no."))
    def patient_number(self, obj):
        return obj.patient_id

    patient_first_name_encrypted = encrypted_display("patient_first_name", _("first name"))
    patient_last_name_encrypted = encrypted_display("patient_last_name", _("last name"))
    patient_date_of_birth_encrypted = encrypted_display("patient_date_of_birth", _("date of birth"))
    reason_encrypted = encrypted_display("reason", _("reason for the visit"))
    patient_insurance_type_encrypted = encrypted_display(
        "patient_insurance_type", _("insurance type")
    )

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
