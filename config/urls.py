from django.contrib import admin
from django.urls import include, path

from jobs import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("jobs.api.urls")),
    path("", include("jobs.urls")),
]
