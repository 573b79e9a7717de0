"""Reads of tenants and memberships."""

from contactcenter.models import Membership
from contactcenter.tenancy import dangerously_all_tenants


def memberships_of_user(user) -> list[Membership]:
    """Every active membership of `user`, across tenants, with the tenant loaded.

    Crosses tenants on purpose: this is how the entry points decide which tenant a user is in.
    It is safe because it is filtered by the user themselves.
    """
    if not user.is_authenticated:
        return []
    with dangerously_all_tenants():
        return list(
            Membership.objects.filter(user=user, is_active=True)
            .select_related("tenant", "user")
            .order_by("tenant__name")
        )


def choose_membership(memberships: list[Membership], preferred_tenant_id: int | None) -> Membership | None:
    """The membership the user acts in: the preferred tenant if they belong to it, else their first."""
    for membership in memberships:
        if membership.tenant_id == preferred_tenant_id:
            return membership
    return memberships[0] if memberships else None


def members_of_current_tenant():
    """Members of the current tenant, for the team directory."""
    return Membership.objects.filter(is_active=True).select_related("user").order_by("user__username")
