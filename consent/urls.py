from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("consents/", views.consents, name="consents"),
    path("consents/<uuid:consent_id>/revoke/", views.revoke, name="revoke"),
    path("access-log/", views.access_log, name="access_log"),
]
