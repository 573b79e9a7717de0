"""Pages of the project package: health, sign-in, team directory and the tenant switcher (the home page is
the agent desktop, desktop.views.workspace)."""

from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from contactcenter.access import member_required
from contactcenter.health import check_postgres, check_redis, worker_heartbeat_age_seconds
from contactcenter.middleware import SESSION_TENANT_KEY
from contactcenter.models import Membership
from contactcenter.selectors import members_of_current_tenant
from contactcenter.signin import SignInForm
from contactcenter.tenancy import get_in_tenant_or_404


@never_cache
def healthz(request):
    """Liveness: answers while the process can serve a request at all."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    """Readiness: 200 only when PostgreSQL and Redis both answer; 503 names what failed."""
    failures = {name: error for name, error in (("postgres", check_postgres()), ("redis", check_redis())) if error}
    body = {
        "status": "unavailable" if failures else "ok",
        "checks": {name: failures.get(name, "ok") for name in ("postgres", "redis")},
        "worker_heartbeat_age_seconds": worker_heartbeat_age_seconds() if "redis" not in failures else None,
    }
    return JsonResponse(body, status=503 if failures else 200)


@member_required()
def team(request):
    return render(request, "contactcenter/team.html", {"members": members_of_current_tenant()})


@member_required()
def team_member(request, public_id: str):
    member = get_in_tenant_or_404(Membership.objects.select_related("user"), public_id=public_id)
    return render(request, "contactcenter/team_member.html", {"member": member})


@require_POST
@member_required()
def tenant_switch(request):
    """Switch to another tenant the user belongs to; a tenant they do not belong to is refused."""
    wanted_slug = request.POST.get("tenant", "")
    chosen = next((m for m in request.memberships if m.tenant.slug == wanted_slug), None)
    if chosen is None:
        messages.error(request, "You are not a member of that organisation.")
        return redirect("home")
    request.session[SESSION_TENANT_KEY] = chosen.tenant_id
    messages.success(request, f"Now working in {chosen.tenant.name}.")
    return redirect("home")


class SignInView(LoginView):
    """Django's sign-in page with throttling (contactcenter.signin): 429 while a user is locked out."""

    form_class = SignInForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response
