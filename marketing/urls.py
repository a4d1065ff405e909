"""The project's URLs: the one place that names every app's routes."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from marketing.health import healthz

admin.site.site_header = "Herald"
admin.site.site_title = "Herald"
admin.site.index_title = "Messaging automation"

urlpatterns = [
    path(settings.HERALD_ADMIN_PATH, admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("orders.urls")),
    path("", include("channels.urls")),
    path("anymail/", include("anymail.urls")),
    path("", include("marketing.public_urls")),
    path("", RedirectView.as_view(url="/" + settings.HERALD_ADMIN_PATH, permanent=False)),
]
