from django.urls import path

from vault import views

app_name = "vault"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("record/", views.record, name="record"),
    path("relatives/takeover/<str:token>/", views.relative_takeover, name="relative_takeover"),
]
