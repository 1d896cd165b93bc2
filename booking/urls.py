from django.urls import path

from booking import views

app_name = "booking"

urlpatterns = [
    path("waitlist/offers/<uuid:offer_id>/", views.waitlist_offer, name="waitlist_offer"),
]
