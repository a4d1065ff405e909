"""Public pages customers reach from our messages: unsubscribe and preferences. The
project URLconf includes these at the root (the links in sent messages are /u/<token>/)."""

from __future__ import annotations

from django.urls import path

from marketing import unsubscribe

app_name = "marketing_public"
urlpatterns = [
    path("u/<str:token>/", unsubscribe.unsubscribe_view, name="unsubscribe"),
    path("u/<str:token>/preferences/", unsubscribe.preferences_view, name="preferences"),
]
