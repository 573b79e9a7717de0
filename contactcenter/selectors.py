"""Reads of tenants and memberships."""

from django.db.models import Count

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


def selection_counts(rows, field_name: str, *, empty: str = "Nobody") -> list[tuple[str, int]]:
    """How many of `rows` (a queryset) have each value of `field_name`, most first, in one query:
    a choice field by its label, a member (assignee) by name, another relation by its name.
    For the confirmation page of a bulk action, which says what the selection is now."""
    field = rows.model._meta.get_field(field_name)
    if field.is_relation and field.related_model is Membership:
        keys = [f"{field_name}__user__first_name", f"{field_name}__user__last_name", f"{field_name}__user__username"]
    elif field.is_relation:
        keys = [f"{field_name}__name"]
    else:
        keys = [field_name]
    counts = rows.order_by().values_list(*keys).annotate(n=Count("pk")).order_by("-n", *keys)
    labels = dict(field.flatchoices) if field.choices else {}
    result = []
    for *values, n in counts:
        if field.is_relation and field.related_model is Membership:
            label = " ".join(filter(None, values[:2])) or values[2]
        else:
            label = labels.get(values[0], values[0])
        result.append((str(label) if label not in (None, "") else empty, n))
    return result
