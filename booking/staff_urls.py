from django.urls import path

from booking import staff_views

app_name = "booking_staff"

urlpatterns = [
    path("schedule/", staff_views.schedule, name="schedule"),
    path(
        "appointments/<uuid:appointment_id>/move/",
        staff_views.appointment_move,
        name="move",
    ),
    path("clinic/", staff_views.clinic_dashboard, name="clinic"),
    path("clinic/opening-hours/", staff_views.opening_hours, name="opening_hours"),
    path(
        "clinic/opening-hours/<int:opening_hours_id>/remove/",
        staff_views.opening_hours_remove,
        name="opening_hours_remove",
    ),
    path("clinic/absences/", staff_views.absences, name="absences"),
    path(
        "clinic/absences/<int:absence_id>/remove/",
        staff_views.absence_remove,
        name="absence_remove",
    ),
    path("clinic/slots/", staff_views.slots, name="slots"),
    path("clinic/motives/", staff_views.motives, name="motives"),
    path(
        "clinic/motives/<int:motive_id>/remove/",
        staff_views.motive_remove,
        name="motive_remove",
    ),
]
