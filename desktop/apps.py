from django.apps import AppConfig


class DesktopConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "desktop"
    verbose_name = "Agent desktop"
