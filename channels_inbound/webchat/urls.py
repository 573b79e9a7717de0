"""Pages of the webchat widget outside /webhooks/ (mounted at /webchat/ by contactcenter.urls)."""

from django.urls import path

from channels_inbound.webchat import views

urlpatterns = [
    path("demo/", views.demo, name="webchat-demo"),
]
