from django.urls import path

from channels_inbound.email import views as email_views
from channels_inbound.twilio import views as twilio_views
from channels_inbound.webchat import views as webchat_views

urlpatterns = [
    path("twilio/messaging", twilio_views.messaging, name="twilio-messaging"),
    path("twilio/status", twilio_views.status, name="twilio-status"),
    path("twilio/voice", twilio_views.voice, name="twilio-voice"),
    path("twilio/voice/status", twilio_views.voice_status, name="twilio-voice-status"),
    path("twilio/fax", twilio_views.fax, name="twilio-fax"),
    path("email/inbound", email_views.inbound, name="email-inbound"),
    path("webchat/upload", webchat_views.upload, name="webchat-upload"),
]
