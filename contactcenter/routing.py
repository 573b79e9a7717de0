"""Websocket URL map. Each app's consumers are listed here, so every socket route is in one place.

Each route carries its own guard, because the two audiences differ:
- members (agents, supervisors, admins) open their socket from our own pages: the Origin must be
  one of ALLOWED_HOSTS and the session authenticates them (desktop.consumers.DesktopConsumer, the
  member socket that answers pushes with the desktop's fragments);
- webchat visitors open theirs from customers' websites, anonymously: VisitorConsumer refuses the
  handshake unless the Origin is one the widget's endpoint allows, and a signed visitor token
  (no session) says who they are.
"""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from channels_inbound.webchat.consumers import VisitorConsumer
from desktop.consumers import DesktopConsumer

websocket_urlpatterns = [
    path("ws/member/", AllowedHostsOriginValidator(AuthMiddlewareStack(DesktopConsumer.as_asgi())), name="ws-member"),
    path("ws/webchat/", VisitorConsumer.as_asgi(), name="ws-webchat"),
]
