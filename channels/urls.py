from __future__ import annotations

from django.urls import path

from channels.receipts import receipt_view

app_name = "channels"
urlpatterns = [
    path("channels/receipts/<slug:alias>/", receipt_view, name="receipts"),
]
