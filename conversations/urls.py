"""Attachments (mounted at /attachments/ by contactcenter.urls)."""

from django.urls import path

from conversations import views

urlpatterns = [
    path("public/<str:token>/", views.attachment_public, name="attachment-public"),
    path("<str:public_id>/", views.attachment_download, name="attachment-download"),
]
