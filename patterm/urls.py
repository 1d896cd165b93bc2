from django.contrib import admin
from django.urls import path

from patterm import views
from patterm.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("api/", api.urls),
    path("admin/", admin.site.urls),
]

handler500 = "patterm.views.server_error"
