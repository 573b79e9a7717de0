"""The HTTP entry point of tenancy: every request runs inside the signed-in user's tenant."""

from contextlib import nullcontext

from django.urls import reverse
from django.utils import timezone

from contactcenter.selectors import choose_membership, memberships_of_user
from contactcenter.tenancy import dangerously_all_tenants, tenant_context

SESSION_TENANT_KEY = "switchboard_tenant_id"


class CurrentTenantMiddleware:
    """Sets `request.membership`, `request.tenant` and the tenant context for the whole request.

    The tenant comes from the user's own memberships (the one chosen with the tenant switcher, kept
    in the session), never from the URL. Superusers in the admin see every tenant.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._admin_prefix = None

    def __call__(self, request):
        user = request.user
        memberships = memberships_of_user(user)
        membership = choose_membership(memberships, request.session.get(SESSION_TENANT_KEY))
        request.memberships = memberships
        request.membership = membership
        request.tenant = membership.tenant if membership else None

        if self._admin_prefix is None:
            self._admin_prefix = reverse("admin:index")
        if user.is_authenticated and user.is_superuser and request.path.startswith(self._admin_prefix):
            scope = dangerously_all_tenants()  # superusers administer every tenant
        elif membership is not None:
            scope = tenant_context(membership.tenant_id)
        else:
            scope = nullcontext()
        # Times on pages read in the tenant's own time zone (stored and computed in UTC).
        with scope, timezone.override(request.tenant.time_zone if request.tenant else None):
            return self.get_response(request)


def tenant_context_processor(request):
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {
        "membership": membership,
        "tenant": membership.tenant,
        "other_memberships": [m for m in request.memberships if m.pk != membership.pk],
    }
