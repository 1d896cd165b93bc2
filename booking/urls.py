from django.urls import path, re_path

from booking import views

app_name = "booking"

# The search is the site's start page: patterm.views.home renders it under the name "home".
urlpatterns = [
    path("book/<str:slot_id>/", views.book, name="book"),
    path("practitioners/<int:membership_id>/", views.practitioner, name="practitioner"),
    path("appointments/", views.appointments, name="appointments"),
    path("appointments/<uuid:appointment_id>/", views.appointment, name="appointment"),
    path("appointments/<uuid:appointment_id>/ics/", views.ics, name="ics"),
    path("appointments/<uuid:appointment_id>/cancel/", views.cancel, name="cancel"),
    path("appointments/<uuid:appointment_id>/move/", views.move, name="move"),
    path("waitlist/", views.waitlist_page, name="waitlist"),
    path("insurance/", views.insurance, name="insurance"),
    path("waitlist/<uuid:entry_id>/leave/", views.waitlist_leave, name="waitlist_leave"),
    path("waitlist/offers/<uuid:offer_id>/", views.waitlist_offer, name="waitlist_offer"),
    re_path(r"^record/export/(?P<format>json|fhir)/$", views.export, name="export"),
    path("record/erasure/", views.erasure, name="erasure"),
]
