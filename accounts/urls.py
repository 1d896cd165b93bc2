from django.urls import path

from accounts import security_views, views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login, name="login"),
    path("login/code/", security_views.login_code, name="login_code"),
    path("logout/", views.logout, name="logout"),
    # Account security: sessions, the authenticator app, passwords
    path("sessions/", security_views.sessions_page, name="sessions"),
    path("sessions/<str:session_id>/end/", security_views.session_end, name="session_end"),
    path("sessions/end-others/", security_views.sessions_end_others, name="sessions_end_others"),
    path("authenticator/", security_views.otp_setup, name="otp_setup"),
    path("password/", security_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/reset/", security_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        security_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        security_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        security_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
