from django.urls import path, re_path

from vault import views

app_name = "vault"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("record/", views.record, name="record"),
    path("relatives/", views.relatives_page, name="relatives"),
    path("relatives/<int:relative_id>/", views.relative_page, name="relative"),
    path("relatives/<int:relative_id>/invite/", views.relative_invite, name="relative_invite"),
    re_path(
        r"^relatives/(?P<relative_id>[0-9]+)/export/(?P<format>json|fhir)/$",
        views.relative_export,
        name="relative_export",
    ),
    path("relatives/takeover/<str:token>/", views.relative_takeover, name="relative_takeover"),
]
