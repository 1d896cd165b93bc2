from django.urls import path

from vault import staff_views

app_name = "vault_staff"

urlpatterns = [
    path("patients/", staff_views.patient_lookup, name="patient_lookup"),
    path("patients/<int:patient_id>/", staff_views.record, name="record"),
    path("patients/<int:patient_id>/entries/", staff_views.entry_write, name="entry_write"),
    path(
        "patients/<int:patient_id>/emergency-access/",
        staff_views.emergency_access,
        name="emergency_access",
    ),
    path("clinic/emergency-accesses/", staff_views.emergency_review, name="emergency_review"),
]
