from django.contrib import admin
from django.urls import include, path

from patterm import views
from patterm.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("start/", views.start, name="start"),
    path("account/", include("accounts.urls")),
    path("", include("booking.urls")),
    path("staff/", include("booking.staff_urls")),
    path("staff/", include("vault.staff_urls")),
    path("staff/", include("audit.staff_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", api.urls),
    path("admin/", admin.site.urls),
]

handler400 = "patterm.web.bad_request"
handler403 = "patterm.web.permission_denied"
handler404 = "patterm.web.page_not_found"
handler500 = "patterm.views.server_error"
