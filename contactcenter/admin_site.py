"""The admin site and the base of every tenant-owned model's admin, scoped by tenant.

Supervisors and admins of a tenant use it without being Django staff: access follows their role in
the current tenant. Row scoping needs no code here: the request runs inside the tenant (see
contactcenter.tenancy), so every changelist, change page, form choice and bulk action sees only that
tenant's rows, and superusers (who run with scoping lifted in the admin) see everything.
"""

from functools import update_wrapper

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse

from contactcenter.models import Role


def membership_of(request):
    return getattr(request, "membership", None)


class SwitchboardAdminSite(admin.AdminSite):
    site_header = "Switchboard administration"
    site_title = "Switchboard admin"
    index_title = "Configuration and supervision"

    def has_permission(self, request):
        user = request.user
        if not user.is_active or not user.is_authenticated:
            return False
        if user.is_superuser:
            return True
        membership = membership_of(request)
        return membership is not None and membership.can_supervise

    def admin_view(self, view, cacheable=False):
        protected = super().admin_view(view, cacheable)

        def view_for_members_with_a_role(request, *args, **kwargs):
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied("Your role does not give access to the admin.")
            return protected(request, *args, **kwargs)

        return update_wrapper(view_for_members_with_a_role, protected)

    def login(self, request, extra_context=None):
        # One sign-in page for everyone. A signed-in user without admin rights gets 403 rather than
        # a second login form (which would send them back here in a loop).
        if request.user.is_authenticated:
            raise PermissionDenied("Your role does not give access to the admin.")
        return redirect_to_login(request.GET.get("next") or reverse("admin:index"))


class TenantScopedAdmin(admin.ModelAdmin):
    """Base of every admin for a tenant-owned model.

    `edit_role` is the least role that may change rows (supervisor by default; admin for users and
    tenant settings). Any member who may open the admin may view.
    """

    edit_role: Role = Role.SUPERVISOR

    def _may_edit(self, request) -> bool:
        if request.user.is_superuser:
            return True
        membership = membership_of(request)
        if membership is None:
            return False
        if self.edit_role == Role.ADMIN:
            return membership.can_administer
        return membership.can_supervise

    def has_module_permission(self, request):
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request):
        return self._may_edit(request)

    def has_change_permission(self, request, obj=None):
        return self._may_edit(request)

    def has_delete_permission(self, request, obj=None):
        return self._may_edit(request)

    def get_object(self, request, object_id, from_field=None):
        # Django's admin redirects to the index for a missing object; for another tenant's object
        # that would confirm it exists somewhere. A 404 says nothing.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object in your organisation.")
        return obj

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and "tenant" not in excluded:
            excluded.append("tenant")
        return excluded

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if request.user.is_superuser and "tenant" not in columns:
            columns.append("tenant")
        return columns

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser:
            obj.tenant = request.tenant
        super().save_model(request, obj, form, change)


class ServiceManagedAdmin(TenantScopedAdmin):
    """Rows that only services and webhooks write (conversations, tasks, offers, logs): the admin
    shows them and never adds, changes or deletes them, so every change keeps going through the
    one function that validates it and writes the activity log."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
