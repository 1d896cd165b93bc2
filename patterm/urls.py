from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from fhirapi.api import fhir_api
from patterm import views
from patterm.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("start/", views.start, name="start"),
    path("account/", include("accounts.urls")),
    path("", include("booking.urls")),
    path("", include("vault.urls")),
    path("", include("consent.urls")),
    path("staff/", include("booking.staff_urls")),
    path("staff/", include("vault.staff_urls")),
    path("staff/", include("audit.staff_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", api.urls),
    # The FHIR R4 read API: its own NinjaAPI, OperationOutcome errors (decision 0020).
    path("fhir/R4/", fhir_api.urls),
    # The seed backend's README sent people to /docs and /openapi.json: they lead to the API's.
    path("docs", RedirectView.as_view(url="/api/docs", permanent=True)),
    path("openapi.json", RedirectView.as_view(url="/api/openapi.json", permanent=True)),
    path("admin/", admin.site.urls),
]

handler400 = "patterm.web.bad_request"
handler403 = "patterm.web.permission_denied"
handler404 = "patterm.web.page_not_found"
handler500 = "patterm.views.server_error"
