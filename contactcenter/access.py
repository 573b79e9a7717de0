"""Who may open a page: a signed-in member of the current tenant, optionally with a role."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from contactcenter.models import Role


def member_required(*roles: Role):
    """Signed-in users with a membership in the current tenant (and one of `roles`, when given)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = request.membership
            if membership is None:
                raise PermissionDenied("Your account is not a member of any tenant.")
            if roles and membership.role not in roles:
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
