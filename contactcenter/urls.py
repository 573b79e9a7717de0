from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from contactcenter import views
from desktop import views as desktop_views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/login/", views.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/switch/", views.tenant_switch, name="tenant-switch"),
    path("team/", views.team, name="team"),
    path("team/<str:public_id>/", views.team_member, name="team-member"),
    path("webhooks/", include("channels_inbound.urls")),
    path("webchat/", include("channels_inbound.webchat.urls")),
    path("attachments/", include("conversations.urls")),
    path("desktop/", include("desktop.urls")),
    path("", include("tasks.urls")),  # the supervisors' wallboard and reports, each agent's own figures
    path("admin/", admin.site.urls),
    path("", desktop_views.workspace, name="home"),
]
