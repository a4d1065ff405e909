from __future__ import annotations

from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("webhooks/<slug:protocol>/<slug:slug>/", views.shop_webhook, name="webhook"),
]
