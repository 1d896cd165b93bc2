from django.urls import path

from audit import staff_views

app_name = "audit_staff"

urlpatterns = [
    path("audit/events/", staff_views.events, name="events"),
    path("audit/verify/", staff_views.verify, name="verify"),
    path("audit/verify/run/", staff_views.verify_run, name="verify_run"),
]
