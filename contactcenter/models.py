"""Tenants and who belongs to them. Everything else a tenant owns inherits TenantOwnedModel."""

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from contactcenter.tenancy import TenantOwnedModel


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (for example Europe/Paris)")


class Tenant(models.Model):
    """One organisation using Switchboard; its rows are invisible to every other tenant."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    auto_close_after_hours = models.PositiveIntegerField(
        default=72, help_text="Resolved conversations close by themselves after this many hours without news"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    SUPERVISOR = "supervisor", "Supervisor"
    ADMIN = "admin", "Admin"


class Membership(TenantOwnedModel):
    """A user's place in one tenant. A user may hold several and switch between them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    phone_number = models.CharField(
        max_length=16, blank=True,
        validators=[RegexValidator(r"^\+[1-9]\d{1,14}$", "Enter the number in international format, like +15551230001.")],
        help_text="Calls this agent accepts are connected to this number (international format, +15551230001)",
    )  # fmt: skip

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="one_membership_per_tenant")]
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.get_role_display()}) in tenant {self.tenant_id}"

    @property
    def display_name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def can_supervise(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    @property
    def can_administer(self) -> bool:
        return self.role == Role.ADMIN
