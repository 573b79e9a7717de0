"""Websocket URL map. Each app's consumers are listed here, so every socket route is in one place."""

from django.urls import path

from contactcenter.consumers import MemberConsumer

websocket_urlpatterns = [
    path("ws/member/", MemberConsumer.as_asgi(), name="ws-member"),
]
