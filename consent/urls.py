from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("consents/", views.consents, name="consents"),
    path("consents/<uuid:consent_id>/revoke/", views.revoke, name="revoke"),
    path("access-log/", views.access_log, name="access_log"),
    path("access-log/<int:seq>/proof/", views.access_log_proof, name="access_log_proof"),
    # The same pages for a relative the account holder manages (decision 0014).
    path("relatives/<int:relative_id>/consents/", views.consents, name="relative_consents"),
    path(
        "relatives/<int:relative_id>/consents/<uuid:consent_id>/revoke/",
        views.revoke,
        name="relative_revoke",
    ),
    path("relatives/<int:relative_id>/access-log/", views.access_log, name="relative_access_log"),
    path(
        "relatives/<int:relative_id>/access-log/<int:seq>/proof/",
        views.access_log_proof,
        name="relative_access_log_proof",
    ),
]
