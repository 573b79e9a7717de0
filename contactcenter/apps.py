from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ContactcenterConfig(AppConfig):
    name = "contactcenter"
    verbose_name = "Tenants and people"


class SwitchboardAdminConfig(admin_apps.AdminConfig):
    """Makes the tenant-aware admin site the default, so every app registers with @admin.register."""

    default = False
    default_site = "contactcenter.admin_site.SwitchboardAdminSite"
